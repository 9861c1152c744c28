"""TimescaleDB edition awareness: Community statements and their Apache fallbacks.

The Apache-2 build of TimescaleDB (Debian's package, some managed clouds) refuses continuous
aggregates, compression and every policy with a license error. The schema therefore branches on
``current_setting('timescaledb.license')``:

- ohlcv_5m, ohlcv_1h: continuous aggregates with refresh policies (Community); plain views
  (Apache). Both have the same rows: same bucket membership, labelled by the bucket's END.
- trades compression, segment by symbol after 1 day (Community); none (Apache).
- trades retention, 7 days: add_retention_policy (Community); ``signalstack_apply_retention()``
  called from our own scheduler in the sink (Apache).

Both lists are plain data so a test can plan every Community statement on the Apache server
(they must fail with the license error, not a syntax or catalog error).
"""

from __future__ import annotations

from typing import Any, Final

# Bars are stamped with their END: a 1-minute bar ending at ts covers [ts - 1m, ts). A 5-minute
# bar ending at E aggregates the 1-minute bars with ends in (E - 5m, E], hence the shift.
# vwap is volume-weighted over the 1-minute vwaps (exact when every volume-eligible trade is
# also VWAP-eligible; close otherwise). Minutes without a vwap (a vendor's bar: Yahoo gives
# none) add volume but no price: they are left out of the denominator too, or the bucket's vwap
# would be pulled towards 0 (sql/007_rollup_vwap.py rebuilds the rollups made before this).
_AGGREGATES: Final = """
       first(open, ts)  AS open,
       max(high)        AS high,
       min(low)         AS low,
       last(close, ts)  AS close,
       sum(volume)      AS volume,
       sum(vwap * volume)
           / NULLIF(sum(CASE WHEN vwap IS NOT NULL THEN volume END), 0) AS vwap,
       sum(trade_count)::bigint AS trade_count
  FROM ohlcv_1m"""

# Apache fallback (a plain view, so any expression is allowed): shift the time, bucket, label
# with the bucket's end.
_ROLLUP_SELECT: Final = (
    """
SELECT symbol,
       time_bucket(INTERVAL '{width}', ts - INTERVAL '1 minute') + INTERVAL '{width}' AS ts,"""
    + _AGGREGATES
    + """
 GROUP BY symbol, time_bucket(INTERVAL '{width}', ts - INTERVAL '1 minute')
"""
)

# Community continuous aggregate: the same rows under two TimescaleDB rules (2.19):
# - time_bucket's time argument must be the bare hypertable column ("time bucket function must
#   reference the primary hypertable dimension column"); the shift therefore goes into the
#   offset argument (allowed in continuous aggregates since 2.15). For every ts,
#   time_bucket(w, ts, offset => 1m) = time_bucket(w, ts - 1m) + 1m.
# - every select-list expression must be IMMUTABLE; timestamptz +/- interval is only STABLE, so
#   the end label, bucket + (w - 1m) = time_bucket(w, ts - 1m) + w, is added in UTC
#   (timestamp + interval and AT TIME ZONE 'UTC' are immutable).
# The offset is passed positionally (the 3-argument time_bucket(interval, timestamptz,
# interval) is the offset variant). The bucket itself becomes the aggregate's hidden partition
# column; the view exposes only the label.
_CAGG_BUCKET: Final = "time_bucket(INTERVAL '{width}', ts, INTERVAL '1 minute')"
_CAGG_SELECT: Final = (
    f"""
SELECT symbol,
       (({_CAGG_BUCKET} AT TIME ZONE 'UTC')
           + (INTERVAL '{{width}}' - INTERVAL '1 minute')) AT TIME ZONE 'UTC' AS ts,"""
    + _AGGREGATES
    + f"""
 GROUP BY symbol, {_CAGG_BUCKET}
"""
)

ROLLUPS: Final = {"ohlcv_5m": "5 minutes", "ohlcv_1h": "1 hour"}


def rollup_select(width: str) -> str:
    """The Apache fallback view's SELECT."""
    return _ROLLUP_SELECT.format(width=width)


def cagg_select(width: str) -> str:
    """The Community continuous aggregate's SELECT (same rows as :func:`rollup_select`)."""
    return _CAGG_SELECT.format(width=width)


def _cagg(name: str, width: str) -> list[str]:
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} "
        f"WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"{cagg_select(width)} WITH NO DATA",
        f"SELECT add_continuous_aggregate_policy('{name}', "
        f"start_offset => INTERVAL '3 days', end_offset => INTERVAL '{width}', "
        f"schedule_interval => INTERVAL '{width}', if_not_exists => TRUE)",
    ]


COMMUNITY: Final[list[str]] = [
    *_cagg("ohlcv_5m", ROLLUPS["ohlcv_5m"]),
    *_cagg("ohlcv_1h", ROLLUPS["ohlcv_1h"]),
    "ALTER TABLE trades SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')",
    "SELECT add_compression_policy('trades', INTERVAL '1 day', if_not_exists => TRUE)",
    "SELECT add_retention_policy('trades', INTERVAL '7 days', if_not_exists => TRUE)",
]

APACHE: Final[list[str]] = [
    f"CREATE OR REPLACE VIEW {name} AS {rollup_select(width)}" for name, width in ROLLUPS.items()
]


def rebuild_statements_for(license_: str) -> list[str]:
    """Statements that replace existing rollups with today's definitions (a changed aggregate):
    the Apache views in place; each Community continuous aggregate dropped (its policy with it),
    created again and refreshed over all history, since the policy alone re-materialises only
    its last three days."""
    if license_ != "timescale":
        return list(APACHE)
    out: list[str] = []
    for name, width in ROLLUPS.items():
        out.append(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
        out.extend(_cagg(name, width))
        out.append(f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)")
    return out


def license_of(conn: Any) -> str:
    """'timescale' (Community) or 'apache' for a DB-API connection."""
    cur = conn.cursor()
    cur.execute("SELECT current_setting('timescaledb.license')")
    row = cur.fetchone()
    return str(row[0])


def statements_for(license_: str) -> list[str]:
    return COMMUNITY if license_ == "timescale" else APACHE


def apply_edition(conn: Any) -> None:
    """yoyo step: run the statements for the connected server's edition."""
    statements = statements_for(license_of(conn))
    cur = conn.cursor()
    for sql in statements:
        cur.execute(sql)


def rebuild_rollups(conn: Any) -> None:
    """yoyo step: :func:`rebuild_statements_for` the connected server's edition."""
    cur = conn.cursor()
    for sql in rebuild_statements_for(license_of(conn)):
        cur.execute(sql)
