"""Configuration from the environment (pydantic-settings), documented in .env.example.

Each group has its own env prefix so variable names stay short and conventional
(``KAFKA_BOOTSTRAP_SERVERS``, ``POLYGON_API_KEY``, ``TIMESCALE_PASSWORD``). Secrets are
``SecretStr``: they never print, and the log pipeline redacts them (see ``logging``).
A broken value is reported as one line naming the variable (:func:`load_settings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AnyUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from signalstack.errors import ConfigError

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY")


def _cfg(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, extra="ignore", env_file=None, validate_default=True, frozen=True
    )


class LogSettings(BaseSettings):
    model_config = _cfg("LOG_")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


class PolygonSettings(BaseSettings):
    model_config = _cfg("POLYGON_")
    api_key: SecretStr | None = None
    ws_url: AnyUrl = AnyUrl("wss://socket.polygon.io/stocks")
    rest_url: AnyUrl = AnyUrl("https://api.polygon.io")
    # Requests per second allowed by the plan (Basic: 5 per minute).
    rest_rate_per_s: float = Field(default=50.0, gt=0)


class KafkaSettings(BaseSettings):
    model_config = _cfg("KAFKA_")
    bootstrap_servers: str = "127.0.0.1:9092"
    trades_topic: str = "market.trades"
    features_topic: str = "market.features"
    predictions_topic: str = "market.predictions"
    dlq_topic: str = "market.trades.dlq"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, v: str) -> str:
        for hp in v.split(","):
            host, sep, port = hp.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {hp.strip()!r}")
        return v


class TimescaleSettings(BaseSettings):
    model_config = _cfg("TIMESCALE_")
    host: str = "127.0.0.1"
    port: int = Field(default=5432, gt=0, lt=65536)
    user: str = "signalstack"
    password: SecretStr = SecretStr("")
    database: str = "signalstack"

    def dsn(self) -> str:
        """libpq URL including the password: pass it to drivers, never log it."""
        pw = self.password.get_secret_value()
        auth = f"{self.user}:{pw}@" if pw else f"{self.user}@"
        return f"postgresql://{auth}{self.host}:{self.port}/{self.database}"


class StoreSettings(BaseSettings):
    model_config = _cfg("STORE_")
    type: Literal["duckdb", "timescale"] = "duckdb"
    duckdb_path: str = ":memory:"


def split_symbols(value: str) -> tuple[str, ...]:
    """``"aapl, msft"`` → ``("AAPL", "MSFT")``: MARKET_SYMBOLS and every ``--symbols`` option."""
    return tuple(s.strip().upper() for s in value.split(",") if s.strip())


class MarketSettings(BaseSettings):
    model_config = _cfg("MARKET_")
    symbols: Annotated[tuple[str, ...], NoDecode] = DEFAULT_SYMBOLS
    extended_hours: bool = False
    calendar: str = "XNYS"

    @field_validator("symbols", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_symbols(v) if isinstance(v, str) else v

    @field_validator("symbols")
    @classmethod
    def _non_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one symbol is required")
        return v


class ServingSettings(BaseSettings):
    """Knobs of the inference API (see docs/components/serving.md)."""

    model_config = _cfg("SERVING_")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
    api_token: SecretStr | None = None  # unset or empty: no auth
    # a directory with one bundle directory per model (regime/, direction/, anomaly/); unset:
    # the MLflow registry alias MLFLOW_MODEL_ALIAS of <MLFLOW_MODEL_PREFIX><model>
    model_dir: Path | None = None
    models: Annotated[tuple[str, ...], NoDecode] = ("regime", "direction", "anomaly")
    reload_interval_s: float = Field(default=30.0, gt=0)  # poll the alias / directory this often
    max_body_bytes: int = Field(default=1_048_576, ge=1024)  # larger request bodies: 413
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()  # empty: CORS off
    # live predictions (WS /ws/predictions, market.predictions, the predictions/anomalies
    # tables): where new feature rows come from — none, Kafka market.features (the cluster),
    # or a local feature log directory the local engine writes (the embedded default)
    feed: Literal["none", "kafka", "local"] = "none"
    feed_dir: Path | None = None  # the local feature log (SERVING_FEED=local)
    # the Kafka consumer group, SHARED by the replicas: each row is predicted by one of them
    # ({hostname} is still expanded, but a group per replica predicts every row N times)
    feed_group_id: str = "signalstack-serving"
    # where WS /ws/predictions clients' messages come from: kafka = market.predictions (every
    # replica's predictions; the cluster), feed = this process's predictor (the embedded
    # default), auto = kafka with SERVING_FEED=kafka, else feed
    ws_fanout: Literal["auto", "feed", "kafka"] = "auto"
    ws_queue_size: int = Field(default=256, ge=1)  # messages a client may lag before it is dropped
    ws_subscribe_timeout_s: float = Field(default=10.0, gt=0)  # wait for the first message
    cache_rows: int = Field(default=64, ge=1)  # newest session rows kept per symbol (by-symbol)

    @field_validator("models", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        return v

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - {"regime", "direction", "anomaly"})
        if unknown or not v:
            raise ValueError(f"expected some of regime,direction,anomaly; got {','.join(v)!r}")
        return v

    @field_validator("model_dir", "api_token", "feed_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # a Secret made from a file often ends in a newline, which no header can carry
        if isinstance(v, str):
            return v.strip() or None
        return v

    @model_validator(mode="after")
    def _local_feed_has_dir(self) -> ServingSettings:
        if self.feed == "local" and self.feed_dir is None:
            raise ValueError("SERVING_FEED=local needs SERVING_FEED_DIR (the local feature log)")
        if self.feed == "local" and self.ws_fanout == "kafka":
            raise ValueError(
                "SERVING_WS_FANOUT=kafka reads market.predictions, which the local feed does not "
                "write: use feed (or auto) with SERVING_FEED=local"
            )
        return self


def redact_uri(uri: str) -> str:
    """``uri`` without its userinfo (``https://user:token@host`` → ``https://***@host``): for
    logs, errors and health pages."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    host, at, tail = rest.partition("@")
    if not at or "/" in host:
        return uri
    return f"{scheme}://***@{tail}"


class MlflowSettings(BaseSettings):
    model_config = _cfg("MLFLOW_")
    # a local SQLite store by default (no server); a cluster points it at the MLflow server
    tracking_uri: str = "sqlite:///.cache/mlflow/local.db"
    model_alias: str = "champion"
    # registered models are <prefix>regime, <prefix>direction, <prefix>anomaly (several
    # deployments, or test sessions, sharing one MLflow server keep apart)
    model_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$")


class IngestSettings(BaseSettings):
    """Knobs of the ingest service (see docs/components/ingest.md)."""

    model_config = _cfg("INGEST_")

    http_host: str = "127.0.0.1"
    http_port: int = Field(
        default=9108, ge=0, lt=65536
    )  # /metrics /health/live /health/ready; 0 = any
    queue_frames: int = Field(default=4096, ge=1)  # bounded socket → parser queue
    max_skew_s: float | None = Field(default=900.0, gt=0)  # live trades further off → DLQ
    dedup_horizon_s: float = Field(default=600.0, gt=0)  # identities remembered (event time)
    gap_lookback_s: float = Field(default=300.0, ge=0)  # gap fill starts this much earlier
    gap_fill: bool = True
    trades_retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_partitions: int = Field(default=1, ge=1)
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    linger_ms: int = Field(default=5, ge=0)  # latency (tick→row) vs. requests per second
    batch_size: int = Field(default=1_000_000, ge=1)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    max_connections_backoff_s: tuple[float, float] = (60.0, 180.0)
    # "errors": reports for failures only, acks derived exactly from the producer queue, latency
    # per frame; "all": a delivery report per message (a Python callback each, ~1 µs).
    delivery_reports: Literal["all", "errors"] = "errors"
    stale_after_s: float = Field(default=30.0, gt=0)  # liveness: processor silent this long
    # Delivery reports are served by their own thread this often, fed or idle.
    delivery_poll_s: float = Field(default=0.05, gt=0)
    # 0: a queued trade waits for the broker as long as it takes (never dropped by a timeout).
    message_timeout_ms: int = Field(default=0, ge=0)
    # Readiness: false while every broker is down, or queued trades see no ack for this long.
    delivery_stall_s: float = Field(default=10.0, gt=0)
    # Restart: the gap fill starts at the topic's last acknowledged trades (gap_lookback_s
    # earlier), reading that much of its tail plus this margin; not after a stop this long.
    resume_margin_s: float = Field(default=60.0, ge=0)
    resume_max_gap_s: float = Field(default=3600.0, ge=0)

    @model_validator(mode="after")
    def _lookback_within_dedup_horizon(self) -> IngestSettings:
        # A gap fill re-reads gap_lookback_s of trades already sent; only the dedup window
        # (dedup_horizon_s of event time) keeps them from being produced twice.
        if self.gap_fill and self.gap_lookback_s >= self.dedup_horizon_s:
            raise ValueError(
                f"INGEST_GAP_LOOKBACK_S ({self.gap_lookback_s:g}) must be below "
                f"INGEST_DEDUP_HORIZON_S ({self.dedup_horizon_s:g}): a gap fill would write "
                "trades again that the dedup window no longer remembers"
            )
        return self


class SinkSettings(BaseSettings):
    """Knobs of the sink service (see docs/components/sink.md)."""

    model_config = SettingsConfigDict(**_cfg("SINK_"), env_parse_none_str="")  # "" = off
    group_id: str = "signalstack-sink"
    max_batch: int = Field(default=5_000, ge=1)  # messages per poll: bounds memory and latency
    poll_timeout_s: float = Field(default=0.002, gt=0)  # wait unless max_batch arrive
    fetch_wait_max_ms: int = Field(default=5, ge=0)  # broker holds a fetch this long …
    fetch_min_bytes: int = Field(default=1, ge=1)  # … unless this much data is there
    commit_interval_s: float = Field(default=1.0, ge=0)  # offsets of durable batches, batched
    # False: a write's COMMIT does not wait for the WAL fsync (rows are visible at once); the
    # offsets are committed only once the WAL is flushed past it (docs/components/sink.md).
    synchronous_commit: bool = False
    durable_wait_s: float = Field(default=10.0, gt=0)  # at shutdown: wait this long for the flush
    http_host: str = "0.0.0.0"  # noqa: S104  # /metrics, /health/*: the pod's probes and scrapes
    http_port: int | None = Field(default=9109, ge=0, lt=65536)  # /metrics, /health/*; unset: off
    # librdkafka statistics (consumer lag, the group coordinator's reachability for
    # /health/ready) this often, served on the consumer thread: no broker round trip
    stats_interval_ms: int = Field(default=1_000, ge=100)
    retention_interval_s: float = Field(default=3600.0, gt=0)  # Apache-edition retention fallback
    session_timeout_ms: int = Field(default=10_000, ge=1000)  # a crashed sink's partitions move on
    topics: tuple[str, ...] | None = None  # default: trades, features, predictions


class StreamSettings(BaseSettings):
    """Knobs of the stream engines (see docs/components/stream.md)."""

    model_config = _cfg("STREAM_")
    lateness_ms: int = Field(default=5_000, ge=0)  # allowed lateness of the event-time watermark
    checkpoint_dir: str = ".cache/checkpoints/stream"  # Spark checkpoints (a PVC on a cluster)
    trigger_seconds: float = Field(default=1.0, gt=0)  # Spark processing-time trigger
    shuffle_partitions: int = Field(default=2, ge=1)  # fixed once a checkpoint exists
    spark_master: str = "local[2]"  # the chart's SparkApplication sets the cluster master
    http_host: str = "127.0.0.1"  # the Spark job's /metrics, /health/*: 0.0.0.0 in a pod
    http_port: int = Field(default=9110, ge=0, lt=65536)  # 0 = any free port
    # the local engine's feature rows to this directory (the feature log a `signalstack serve`
    # with SERVING_FEED=local reads) instead of Kafka market.features; unset: Kafka
    feature_log_dir: Path | None = None

    @field_validator("feature_log_dir", mode="before")
    @classmethod
    def _empty_log_dir_is_unset(cls, v: Any) -> Any:
        return (v.strip() or None) if isinstance(v, str) else v


class BackfillSettings(BaseSettings):
    """Knobs of ``signalstack backfill`` (see docs/components/backfill.md)."""

    model_config = _cfg("BACKFILL_")
    lookback_sessions: int = Field(default=5, ge=1)  # --scheduled: the last N closed sessions
    merge_minutes: int = Field(default=15, ge=0)  # gaps this close are fetched as one range
    page_limit: int = Field(default=50_000, ge=1, le=50_000)  # /v3/trades results per page
    yfinance_rate_per_s: float = Field(default=0.5, gt=0)  # --source yfinance: Yahoo requests/s
    yfinance_max_retries: int = Field(default=4, ge=0)  # rate-limit/network errors retried
    pushgateway_url: str = ""  # push the last run's metrics here (job signalstack-backfill)
    metrics_file: str = ""  # or write them to this node-exporter textfile


class TrainingSettings(BaseSettings):
    """Labels and evaluation splits of the training job (see docs/MODELS.md)."""

    model_config = _cfg("TRAIN_")
    direction_horizon_minutes: int = Field(default=5, ge=1)  # k of the forward k-minute return
    direction_band: float = Field(default=0.5, ge=0)  # dead band, × the window's realised vol
    regime_horizon_minutes: int = Field(default=30, ge=1)
    regime_vol_threshold: float = Field(default=0.024, gt=0)  # daily-equivalent vol: volatile
    regime_trend_z: float = Field(default=1.4, ge=0)  # |R| / RV at or above: trending
    split_scheme: Literal["expanding", "rolling"] = "expanding"
    n_splits: int = Field(default=4, ge=1)  # walk-forward test folds
    rolling_train_blocks: int = Field(default=2, ge=1)  # blocks a rolling fold trains on
    embargo_horizons: float = Field(default=1.0, ge=0)  # gap before a test fold, × max horizon
    seed: int = 0  # every model's and baseline's randomness
    experiment: str = "signalstack"  # MLflow experiment
    # a champion (and every baseline) must be beaten by at least this; > 0, so an equal model
    # never replaces one
    gate_margin: float = Field(default=0.02, gt=0)
    sequence_length: int = Field(default=30, ge=1)  # LSTM: feature rows of one session per input
    lstm_hidden_size: int = Field(default=32, ge=1)
    lstm_epochs: int = Field(default=6, ge=1)
    lstm_batch_size: int = Field(default=256, ge=1)
    lstm_learning_rate: float = Field(default=2e-3, gt=0)
    xgb_n_estimators: int = Field(default=100, ge=1)
    xgb_max_depth: int = Field(default=3, ge=1)
    xgb_learning_rate: float = Field(default=0.05, gt=0)
    iforest_n_estimators: int = Field(default=200, ge=1)
    # the anomaly alert threshold: this quantile of the model's scores on its holdout rows
    anomaly_quantile: float = Field(default=0.99, gt=0, lt=1)
    threads: int = Field(default=2, ge=1)  # CPU threads for XGBoost (the LSTM fits on one)


class DriftSettings(BaseSettings):
    """Knobs of ``signalstack drift`` (see docs/components/drift.md)."""

    model_config = SettingsConfigDict(**_cfg("DRIFT_"), env_parse_none_str="")  # "" = unset
    window_minutes: int = Field(default=1440, ge=1)  # the recent window: feature rows this old
    min_rows: int = Field(default=200, ge=1)  # fewer rows in the window: the model is skipped
    warn_psi: float = Field(default=0.1, gt=0)  # PSI from here: warn (reported only)
    alert_psi: float = Field(default=0.25, gt=0)  # any input from here: drift, retrain
    models: Annotated[tuple[str, ...], NoDecode] = ("regime", "direction", "anomaly")
    model_dir: Path | None = None  # bundles <dir>/<model>/bundle.json; unset: the MLflow alias
    # auto: kubernetes inside a pod (KUBERNETES_SERVICE_HOST set), else local
    retrain: Literal["auto", "kubernetes", "local", "off"] = "auto"
    retrain_lookback_days: int = Field(default=20, ge=1)  # the retraining's --start: this far back
    retrain_command: str = "signalstack train --data-source store"  # local mode (shell words)
    retrain_timeout_s: float | None = Field(default=None, gt=0)  # local mode; unset: no limit
    namespace: str = ""  # retraining Jobs' namespace; "": the pod's own, else "default"
    job_template: Path | None = None  # a batch/v1 Job YAML; unset: the one shipped in the package
    job_image: str = ""  # overrides the template's container image when set
    kubeconfig: Path | None = None  # unset: in-cluster config (the pod's service account)
    api_attempts: int = Field(default=5, ge=1)  # Kubernetes API / store calls, with backoff
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=15.0, gt=0)
    pushgateway_url: str = ""  # push the run's gauges here (job signalstack-drift)

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(s.strip().lower() for s in v.split(",") if s.strip())
        return v

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in v if m not in ("regime", "direction", "anomaly")]
        if unknown or not v:
            raise ValueError(f"expected a comma list of regime, direction, anomaly; got {v!r}")
        return v

    @model_validator(mode="after")
    def _warn_below_alert(self) -> DriftSettings:
        if self.warn_psi > self.alert_psi:
            raise ValueError(
                f"DRIFT_WARN_PSI ({self.warn_psi:g}) must not exceed DRIFT_ALERT_PSI "
                f"({self.alert_psi:g})"
            )
        return self


class Settings(BaseSettings):
    """All configuration; each group reads its own prefixed variables."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)
    log: LogSettings = Field(default_factory=LogSettings)
    polygon: PolygonSettings = Field(default_factory=PolygonSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    timescale: TimescaleSettings = Field(default_factory=TimescaleSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    market: MarketSettings = Field(default_factory=MarketSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    backfill: BackfillSettings = Field(default_factory=BackfillSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        vals = [
            self.polygon.api_key,
            self.timescale.password,
            self.serving.api_token,
        ]
        return [v.get_secret_value() for v in vals if v is not None and v.get_secret_value()]


GROUPS: dict[str, type[BaseSettings]] = {
    "log": LogSettings,
    "polygon": PolygonSettings,
    "kafka": KafkaSettings,
    "timescale": TimescaleSettings,
    "store": StoreSettings,
    "market": MarketSettings,
    "serving": ServingSettings,
    "mlflow": MlflowSettings,
    "ingest": IngestSettings,
    "sink": SinkSettings,
    "stream": StreamSettings,
    "backfill": BackfillSettings,
    "training": TrainingSettings,
    "drift": DriftSettings,
}


def _describe(group: type[BaseSettings], err: ValidationError) -> str:
    prefix = str(group.model_config.get("env_prefix", ""))
    parts = []
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else "?"
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{prefix}{field.upper()}: {msg}")
    return "; ".join(parts)


def load_settings() -> Settings:
    """Read every group from the environment; raise ConfigError naming the bad variable(s)."""
    loaded: dict[str, BaseSettings] = {}
    problems: list[str] = []
    for name, group in GROUPS.items():
        try:
            loaded[name] = group()
        except ValidationError as err:
            problems.append(_describe(group, err))
        except SettingsError as err:  # a value the env source could not even decode
            problems.append(f"{group.model_config.get('env_prefix', '')}*: {err}")
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return Settings(**loaded)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached); tests call ``get_settings.cache_clear()``."""
    return load_settings()
