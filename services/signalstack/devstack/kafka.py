"""Apache Kafka broker (KRaft, single node, combined broker+controller) from the Maven jars."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from signalstack.devstack.base import Server, ServerError, free_port, port_open
from signalstack.devstack.paths import cache_dir, require

_LOG4J = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def kafka_uuid() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding. Like Kafka's own
    ``Uuid.randomUuid()``, never one starting with "-": kafka-storage's argument parser would
    read it as an option (1 start in 64 failed that way)."""
    while True:
        out = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not out.startswith("-"):
            return out


class KafkaServer(Server):
    name = "kafka"
    start_timeout = 60.0

    def __init__(
        self,
        workdir: Path | None = None,
        heap: str = "1g",
        log_root: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        """``log_root``: where the partition logs go (default: the work dir). A broker shares
        no disk with its database on a cluster; on one machine the bench puts the logs on
        tmpfs so that its writes stay off the database's disk. ``host``/``port``: the client
        listener (default a free loopback port); the live cluster's pods reach a broker on
        the cluster bridge's address (scripts/cluster.sh). The controller stays on loopback."""
        super().__init__(workdir)
        self.data_dir = (
            self.workdir / "data"
            if log_root is None
            else Path(tempfile.mkdtemp(prefix="kafka-logs-", dir=log_root))
        )
        self.libs = require(cache_dir() / "kafka" / "libs", "Apache Kafka")
        self.java = shutil.which("java")
        if self.java is None:
            raise ServerError("java is not on PATH: install a JDK >= 17 (run `make setup`)")
        self.host = host
        self.port = free_port() if port is None else port
        self.controller_port = free_port()
        self.cluster_id = kafka_uuid()
        self.heap = heap

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _java(self, main: str, *args: str) -> list[str]:
        assert self.java is not None
        return [
            self.java,
            # kafka-server-start.sh's default heap, fixed size. With 512m the broker's ~170 MB
            # of live data sat above G1's 35 % start threshold: a concurrent marking cycle
            # (and its Remark pause) every few seconds under steady load.
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            # kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS: short G1 pauses (they are the
            # broker's latency tail), concurrent explicit GCs.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        (self.workdir / "log4j2.properties").write_text(_LOG4J)
        p, c = self.port, self.controller_port
        (self.workdir / "server.properties").write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{c}",
                    f"listeners=PLAINTEXT://{self.host}:{p},CONTROLLER://127.0.0.1:{c}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{p},CONTROLLER://127.0.0.1:{c}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        fmt = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                self.cluster_id,
                "-c",
                str(self.workdir / "server.properties"),
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise ServerError(f"kafka storage format failed: {fmt.stdout}{fmt.stderr}")

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def command(self) -> Sequence[str]:
        return self._java("kafka.Kafka", str(self.workdir / "server.properties"))

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        if not port_open(self.port, self.host):
            return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        md = admin.list_topics(timeout=1.0)
        return bool(md.brokers) and md.cluster_id == self.cluster_id
