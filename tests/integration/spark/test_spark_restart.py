"""Kill the Spark query mid-stream, restart it from its checkpoint: TimescaleDB ends up with
exactly the rows of an uninterrupted computation — none lost, none duplicated."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from signalstack.engines.spark import SparkEngine, SparkJobConfig
from signalstack.engines.ticks import kafka_values, seeded_ticks, sentinel
from signalstack.features import bars_and_features
from signalstack.store.timescale import TimescaleStore

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]


def test_restart_from_checkpoint_gives_same_rows_no_duplicates(
    spark_session, kafka, timescale_db, topic_factory, tmp_path
):
    symbols = ["AAPL", "MSFT"]
    # no trade is ever late (jitter 1.5 s < lateness 5 s), so rows do not depend on batching
    ticks = seeded_ticks(
        seed=9, symbols=tuple(symbols), minutes=25, trades_per_minute=20, late_frac=0.0,
        dup_frac=0.03,
    )  # fmt: skip
    tail = pd.concat(
        [sentinel(symbols, "2024-03-05 17:00:00", 1), sentinel(symbols, "2024-03-05 17:00:10", 2)]
    )
    writer = topic_factory(1)  # one partition: global arrival order
    writer.send(kafka_values(ticks))
    writer.send(kafka_values(tail.iloc[:2]))

    store = TimescaleStore(timescale_db.dsn)
    store.migrate()
    cfg = SparkJobConfig(
        bootstrap=kafka.bootstrap, checkpoint_dir=str(tmp_path / "cp"), trades_topic=writer.topic,
        lateness_ms=5_000, trigger_seconds=0.2, max_offsets_per_trigger=150,
    )  # fmt: skip
    first = SparkEngine(cfg, store)
    first.spark = spark_session
    q, q_dlq = first.start()
    deadline = time.time() + 300
    while first.writer.stats.bars_out < 10 and time.time() < deadline:
        time.sleep(0.05)
    q.stop()  # mid-stream: later offsets unprocessed, the running batch interrupted
    q_dlq.stop()
    stored_mid = len(store.bars(symbols, "2024-03-05", "2024-03-06"))
    assert stored_mid > 0

    second = SparkEngine(cfg, store)
    second.spark = spark_session
    second.run_available()  # resumes from the checkpoint (state + offsets)
    writer.send(kafka_values(tail.iloc[2:]))  # its own batch: the watermark has passed every bar
    second.run_available()

    exp_bars, exp_feats = bars_and_features(ticks)
    assert stored_mid < len(exp_bars)
    got_bars = store.bars(symbols, "2024-03-05", "2024-03-06").reset_index(drop=True)
    got_feats = store.training_frame(
        symbols, "2024-03-05", "2024-03-06", as_of="2024-03-06"
    ).reset_index(drop=True)
    assert len(got_bars) == len(exp_bars)
    assert not got_bars.duplicated(["symbol", "ts"]).any()
    pd.testing.assert_frame_equal(
        got_bars[exp_bars.columns], exp_bars, check_exact=False, rtol=1e-9, check_dtype=False
    )
    pd.testing.assert_frame_equal(
        got_feats[exp_feats.columns], exp_feats, check_exact=False, rtol=1e-9, check_dtype=False
    )
    store.close()
