"""The Spark session settings: loopback only where the driver and executors share a host."""

from __future__ import annotations

import pytest

from signalstack.engines.spark import SparkJobConfig, spark_conf


def job(master: str, **kw: dict[str, str]) -> SparkJobConfig:
    return SparkJobConfig("127.0.0.1:9092", "/tmp/ck", master=master, **kw)


def test_local_master_binds_the_driver_to_loopback() -> None:
    conf = spark_conf(job("local[2]"))
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.driver.host"] == "127.0.0.1"


@pytest.mark.parametrize("master", ["k8s://https://kubernetes.default.svc:443", "spark://m:7077"])
def test_cluster_master_leaves_the_driver_address_to_the_pod(master: str) -> None:
    # Executors in other pods connect to the driver: a loopback driver host would strand them.
    conf = spark_conf(job(master))
    assert "spark.driver.bindAddress" not in conf
    assert "spark.driver.host" not in conf


def test_extra_conf_still_wins() -> None:
    conf = spark_conf(job("k8s://https://k:443", extra_conf={"spark.driver.host": "drv"}))
    assert conf["spark.driver.host"] == "drv"
