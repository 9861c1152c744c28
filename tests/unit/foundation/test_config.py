"""Configuration from the environment."""

from __future__ import annotations

import pytest

from signalstack.config import load_settings
from signalstack.errors import ConfigError


def test_defaults_are_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORE_TYPE", raising=False)
    s = load_settings()
    assert s.store.type == "duckdb"
    assert s.kafka.partitions == 6
    assert s.kafka.trades_topic == "market.trades"


def test_values_parse_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKET_SYMBOLS", "aapl, msft")
    monkeypatch.setenv("TIMESCALE_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("STORE_TYPE", "timescale")
    s = load_settings()
    assert s.market.symbols == ("AAPL", "MSFT")
    assert s.store.type == "timescale"
    assert "s3cret-pw" in s.timescale.dsn()
    assert "s3cret-pw" not in repr(s)
    assert s.secrets() == ["s3cret-pw"]


def test_every_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost")
    monkeypatch.setenv("SERVING_PORT", "70000")
    with pytest.raises(ConfigError) as err:
        load_settings()
    msg = str(err.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in msg and "SERVING_PORT" in msg
    assert "\n" not in msg


def test_a_gap_fill_lookback_beyond_the_dedup_horizon_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INGEST_GAP_LOOKBACK_S", "900")  # the dedup window remembers 600 s
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "INGEST_GAP_LOOKBACK_S" in str(err.value) and "INGEST_DEDUP_HORIZON_S" in str(err.value)
    monkeypatch.setenv("INGEST_GAP_FILL", "false")  # no gap fill: nothing to protect
    assert load_settings().ingest.gap_lookback_s == 900


def test_uris_are_shown_without_their_credentials() -> None:
    from signalstack.config import redact_uri

    assert redact_uri("https://user:tok@mlflow:5000/x") == "https://***@mlflow:5000/x"
    assert redact_uri("postgresql://u:p@db/x") == "postgresql://***@db/x"
    assert redact_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert redact_uri("sqlite:///a/b@c.db") == "sqlite:///a/b@c.db"


def test_a_token_from_a_file_loses_its_trailing_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    from signalstack.config import ServingSettings

    monkeypatch.setenv("SERVING_API_TOKEN", "s3cret-token\n")
    token = ServingSettings().api_token
    assert token is not None and token.get_secret_value() == "s3cret-token"
    monkeypatch.setenv("SERVING_API_TOKEN", " \n")
    assert ServingSettings().api_token is None
