"""``--sink kafka`` pieces that need no broker: the engines recognise backfill history among late
trades (pandas and Arrow batches, the Spark job's raw JSON), and a producer that cannot reach
Kafka fails the page with a clear error instead of hanging or losing it."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from signalstack.backfill.kafka_sink import KafkaProduceError, TradeProducer
from signalstack.config import IngestSettings
from signalstack.engines.local import split_backfill
from signalstack.engines.spark import _is_backfill


def test_late_backfill_trades_are_told_apart_from_late_live_prints() -> None:
    frame = pd.DataFrame({"symbol": "AAPL", "source": ["polygon_ws", "polygon_rest", "sim",
                                                       "polygon_rest"]})  # fmt: skip
    rows, history = split_backfill(frame, [0, 1, 3])
    assert rows.tolist() == [0] and history == 2
    rows, history = split_backfill(pa.RecordBatch.from_pandas(frame), [1, 2])
    assert rows.tolist() == [2] and history == 1
    rows, history = split_backfill(frame.drop(columns=["source"]), [1])
    assert list(rows) == [1] and history == 0


def test_the_spark_job_reads_the_source_from_the_raw_trade() -> None:
    assert _is_backfill(b'{"symbol":"AAPL","source":"polygon_rest"}')
    assert _is_backfill('{"symbol": "AAPL", "source": "polygon_rest"}')
    assert not _is_backfill(b'{"symbol":"AAPL","source":"polygon_ws"}')
    assert not _is_backfill(b"not json") and not _is_backfill(b"[1]") and not _is_backfill(None)


def test_an_unreachable_broker_fails_the_page_clearly() -> None:
    p = TradeProducer(
        "127.0.0.1:9", "market.trades", IngestSettings(), flush_timeout_s=10,
        overrides={"message.timeout.ms": 300},
    )  # fmt: skip
    ev = {"symbol": "AAPL", "ts_event": 1, "source": "polygon_rest"}
    with pytest.raises(KafkaProduceError, match=r"market\.trades: 0 trade\(s\) unacknowledged"):
        p.produce([ev])
    assert p.produced == 0


@pytest.mark.parametrize(
    ("source", "sink", "message"),
    [
        ("yfinance", "kafka", "bars never become trades"),
        ("polygon-aggs", "kafka", "use --sink db"),
        ("polygon", "s3", "--sink must be db or kafka"),
        ("bloomberg", "db", "--source must be polygon, polygon-aggs or yfinance"),
    ],
)
def test_source_and_sink_combinations_that_make_no_sense_are_refused(
    source: str, sink: str, message: str
) -> None:
    from signalstack.backfill.cli import run
    from signalstack.backfill.run import BackfillError
    from signalstack.config import Settings

    with pytest.raises(BackfillError, match=message) as err:
        run(Settings(), symbols="AAPL", start="2024-03-12", end="2024-03-12", source=source,
            sink=sink)  # fmt: skip
    assert err.value.exit_code == 2
