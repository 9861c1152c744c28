"""The WebSocket fan-out's choice (SERVING_WS_FANOUT) and its reading of market.predictions
values; the cluster path runs in tests/integration/serving/test_live_replicas.py."""

from __future__ import annotations

import pytest

from signalstack.config import KafkaSettings, ServingSettings, Settings
from signalstack.serving.fanout import KafkaPredictionFanout, parse_prediction_message
from signalstack.serving.service import live_fanout


@pytest.mark.parametrize(
    ("feed", "mode", "kafka"),
    [
        ("kafka", "auto", True),  # the cluster: every replica's predictions
        ("local", "auto", False),  # the embedded default: in-process
        ("none", "auto", False),
        ("kafka", "feed", False),
        ("none", "kafka", True),  # a replica that only serves WebSocket clients
    ],
)
def test_the_fanout_reads_market_predictions_in_the_cluster_only(
    feed: str, mode: str, kafka: bool, tmp_path: object
) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", predictions_topic="preds"),
        serving=ServingSettings.model_validate(
            {"feed": feed, "feed_dir": str(tmp_path), "ws_fanout": mode}
        ),
    )
    fanout = live_fanout(settings)
    assert (fanout is not None) == kafka
    if fanout is not None:
        assert isinstance(fanout, KafkaPredictionFanout) and fanout.topic == "preds"
        fanout.stop()


def test_a_kafka_fanout_with_the_local_feed_is_refused_with_the_reason(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="local feed does not write"):
        ServingSettings.model_validate(
            {"feed": "local", "feed_dir": str(tmp_path), "ws_fanout": "kafka"}
        )


def test_the_fanout_forwards_a_prediction_value_as_it_is() -> None:
    raw = b'{"schema_version": 1, "symbol": "AAPL", "model_name": "regime", "ts": 1}'
    assert parse_prediction_message(raw) == ("AAPL", "regime", raw)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{nope", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"model_name": "regime"}', "symbol"),
        (b'{"symbol": "AAPL", "model_name": 3}', "model_name"),
    ],
)
def test_a_value_that_is_not_a_prediction_is_refused_with_the_reason(raw: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_prediction_message(raw)
