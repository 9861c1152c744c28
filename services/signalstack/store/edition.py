"""TimescaleDB edition awareness: Community statements and their Apache fallbacks.

The Apache-2 build of TimescaleDB (Debian's package, some managed clouds) refuses continuous
aggregates, compression and every policy with a license error. The schema therefore branches on
``current_setting('timescaledb.license')``:

- ohlcv_5m, ohlcv_1h: continuous aggregates with refresh policies (Community); plain views with
  the same SELECT (Apache).
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
# also VWAP-eligible; close otherwise).
_ROLLUP_SELECT: Final = """
SELECT symbol,
       time_bucket(INTERVAL '{width}', ts - INTERVAL '1 minute') + INTERVAL '{width}' AS ts,
       first(open, ts)  AS open,
       max(high)        AS high,
       min(low)         AS low,
       last(close, ts)  AS close,
       sum(volume)      AS volume,
       sum(vwap * volume) / NULLIF(sum(volume), 0) AS vwap,
       sum(trade_count)::bigint AS trade_count
  FROM ohlcv_1m
 GROUP BY symbol, time_bucket(INTERVAL '{width}', ts - INTERVAL '1 minute')
"""

ROLLUPS: Final = {"ohlcv_5m": "5 minutes", "ohlcv_1h": "1 hour"}


def rollup_select(width: str) -> str:
    return _ROLLUP_SELECT.format(width=width)


def _cagg(name: str, width: str) -> list[str]:
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} "
        f"WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"{rollup_select(width)} WITH NO DATA",
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
