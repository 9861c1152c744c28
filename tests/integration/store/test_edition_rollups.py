"""The Community continuous aggregates ohlcv_5m / ohlcv_1h against the Apache fallback views.

The Apache build here refuses every Community statement by license before TimescaleDB validates
the continuous-aggregate query, so the rules it would apply are checked separately:

- on the real server, each cagg's SELECT, run as a plain query over real ohlcv_1m rows, returns
  exactly the rows of the Apache fallback view (bucket membership and end labels);
- on the real server, its select-list time expression is IMMUTABLE (TimescaleDB rejects a
  continuous aggregate whose target list contains mutable functions);
- statically, every time_bucket call in the cagg statements takes the bare hypertable time
  column ``ts`` and constant width/offset arguments, and the GROUP BY has exactly that one
  bucket (TimescaleDB: "time bucket function must reference the primary hypertable dimension
  column"). Each check is also run on a known-bad form, so it can fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest

from signalstack.store.edition import APACHE, COMMUNITY, ROLLUPS, cagg_select, rollup_select
from signalstack.store.timescale import TimescaleStore

pytestmark = pytest.mark.integration

COLUMNS = "symbol, ts, open, high, low, close, volume, vwap, trade_count"
FREQ = {"5 minutes": "5min", "1 hour": "1h"}
T0 = pd.Timestamp("2024-03-05 13:50:00+00:00")


# --- a small SQL reader: top-level splitting that respects parentheses and quotes -------------


def _scan(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) for each character outside quotes."""
    depth = 0
    quote: str | None = None
    for i in range(start, len(text)):
        ch = text[i]
        if quote is not None:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
            continue
        depth += (ch == "(") - (ch == ")")
        yield i, ch, depth


def _split_top_level(text: str) -> list[str]:
    """``text`` split at its commas outside parentheses and quotes."""
    parts, last = [], 0
    for i, ch, depth in _scan(text):
        if ch == "," and depth == 0:
            parts.append(text[last:i].strip())
            last = i + 1
    parts.append(text[last:].strip())
    return parts


def _call_args(sql: str, open_paren: int) -> tuple[str, int]:
    """Text between the parenthesis at ``open_paren`` and its match, and the match's index."""
    for i, ch, depth in _scan(sql, open_paren):
        if ch == ")" and depth == 0:
            return sql[open_paren + 1 : i], i
    raise AssertionError(f"unbalanced parentheses in {sql!r}")


def _norm(expr: str) -> str:
    return re.sub(r"\s+", " ", expr).strip().lower()


def time_bucket_calls(sql: str) -> list[tuple[str, list[str]]]:
    """Every time_bucket(...) call in ``sql``: (normalised call text, its arguments)."""
    calls = []
    for m in re.finditer(r"\btime_bucket\s*\(", sql, re.IGNORECASE):
        args, end = _call_args(sql, m.end() - 1)
        calls.append((_norm(sql[m.start() : end + 1]), _split_top_level(args)))
    return calls


_NAMED = re.compile(r'^"?(\w+)"?\s*=>\s*(.*)$', re.DOTALL)
_BARE_TS = re.compile(r'^(?:"?ohlcv_1m"?\.)?"?ts"?$', re.IGNORECASE)
_CONST_INTERVAL = re.compile(r"^interval\s+'[^']*'$", re.IGNORECASE)


def cagg_time_bucket_problems(statement: str) -> list[str]:
    """Why TimescaleDB would reject the statement's bucketing (empty if it would not)."""
    problems: list[str] = []
    calls = time_bucket_calls(statement)
    if not calls:
        return ["no time_bucket call"]
    for text, args in calls:
        named = {}
        for pos, arg in enumerate(args):
            m = _NAMED.match(arg)
            positional = ["bucket_width", "ts"][pos] if pos < 2 else f"argument {pos + 1}"
            name, value = (m.group(1).lower(), m.group(2).strip()) if m else (positional, arg)
            named[name] = value
        if not _BARE_TS.match(named.get("ts", "")):
            problems.append(f"{text}: time argument {named.get('ts')!r} is not the bare ts column")
        for name, value in named.items():
            if name != "ts" and not _CONST_INTERVAL.match(value):
                problems.append(f"{text}: {name} {value!r} is not a constant interval")
    if len({text for text, _ in calls}) != 1:
        problems.append(f"more than one distinct time_bucket call: {sorted({t for t, _ in calls})}")
    group_by = re.search(r"\bGROUP\s+BY\b(.*?)(?:\bWITH\s+NO\s+DATA\b|$)", statement, re.I | re.S)
    if group_by is None:
        problems.append("no GROUP BY")
    else:
        grouped = [_norm(g) for g in _split_top_level(group_by.group(1))]
        in_group = [g for g in grouped if g.startswith("time_bucket")]
        if in_group != [calls[0][0]]:
            problems.append(f"GROUP BY buckets {in_group}, expected exactly [{calls[0][0]}]")
    return problems


def _caggs() -> dict[str, str]:
    found = {}
    for sql in COMMUNITY:
        m = re.match(r"\s*CREATE MATERIALIZED VIEW (?:IF NOT EXISTS )?(\w+)", sql, re.IGNORECASE)
        if m:
            found[m.group(1)] = sql
    return found


def _label_expr(select_sql: str) -> str:
    """The select-list expression aliased ``ts`` (the bucket's end label)."""
    m = re.search(r"\bSELECT\b(.*?)\bFROM\s+ohlcv_1m\b", select_sql, re.IGNORECASE | re.DOTALL)
    assert m is not None, select_sql
    items = [i for i in _split_top_level(m.group(1)) if re.search(r"\bAS\s+ts$", i, re.I)]
    assert len(items) == 1, items
    return re.sub(r"\s+AS\s+ts$", "", items[0], flags=re.IGNORECASE)


# --- static checks ----------------------------------------------------------------------------


def test_every_rollup_has_a_community_cagg_and_an_apache_view() -> None:
    assert sorted(_caggs()) == sorted(ROLLUPS)
    for name, width in ROLLUPS.items():
        assert cagg_select(width).strip() in _caggs()[name]
        assert any(sql.startswith(f"CREATE OR REPLACE VIEW {name} AS ") for sql in APACHE)


@pytest.mark.parametrize("name", sorted(ROLLUPS))
def test_community_cagg_buckets_the_bare_time_column(name: str) -> None:
    assert cagg_time_bucket_problems(_caggs()[name]) == []


@pytest.mark.parametrize(
    "bad",
    [
        # The form the review found: an expression as time_bucket's time argument.
        "time_bucket(INTERVAL '5 minutes', ts - INTERVAL '1 minute')",
        "time_bucket(INTERVAL '5 minutes', ts + INTERVAL '0 minute', INTERVAL '1 minute')",
        "time_bucket(INTERVAL '5 minutes', updated_at)",
        "time_bucket(INTERVAL '5 minutes', ts, \"offset\" => (SELECT INTERVAL '1 minute'))",
    ],
)
def test_the_bucket_check_rejects_non_column_time_arguments(bad: str) -> None:
    statement = (
        "CREATE MATERIALIZED VIEW x WITH (timescaledb.continuous) AS "
        f"SELECT symbol, {bad} AS ts, max(high) FROM ohlcv_1m GROUP BY symbol, {bad} WITH NO DATA"
    )
    assert cagg_time_bucket_problems(statement) != []


def test_the_bucket_check_rejects_the_apache_select_and_a_second_bucket() -> None:
    # Fine for a plain view, not for a continuous aggregate.
    assert cagg_time_bucket_problems(rollup_select("5 minutes")) != []
    good = "time_bucket(INTERVAL '5 minutes', ts, INTERVAL '1 minute')"
    other = "time_bucket(INTERVAL '5 minutes', ts)"
    assert cagg_time_bucket_problems(f"SELECT {good} FROM ohlcv_1m GROUP BY {good}") == []
    assert cagg_time_bucket_problems(f"SELECT {good} FROM ohlcv_1m GROUP BY {other}") != []
    assert cagg_time_bucket_problems(f"SELECT {good} FROM ohlcv_1m GROUP BY {good}, {other}") != []


# --- real server ------------------------------------------------------------------------------


@pytest.fixture
def dsn(timescale_db) -> str:
    store = TimescaleStore(timescale_db.dsn)
    try:
        store.migrate()
        assert store.license() == "apache"
    finally:
        store.close()
    return str(timescale_db.dsn)


def _aapl_bars() -> pd.DataFrame:
    """Minute-aligned bar ends 13:50 .. 15:10 (crossing hour boundaries), exact in float."""
    ends = [T0 + pd.Timedelta(minutes=i) for i in range(81)]
    n = len(ends)
    volume = [0.0 if 31 <= i <= 35 else 100.0 + i for i in range(n)]  # 14:21..14:25: no volume
    return pd.DataFrame(
        {
            "ts": ends,
            "symbol": "AAPL",
            "open": [float(i) for i in range(n)],
            "high": [10.0 + (i * 7) % 13 for i in range(n)],
            "low": [-1.0 - (i * 5) % 11 for i in range(n)],
            "close": [i + 0.5 for i in range(n)],
            "volume": volume,
            # 14:02 (i = 12) is a vendor minute without a vwap (Yahoo): volume, no price.
            "vwap": [None if i == 12 else 1.25 + (i % 4) * 0.25 for i in range(n)],
            "trade_count": [1 + i % 3 for i in range(n)],
        }
    )


def _insert(conn: psycopg.Connection[Any], bars: pd.DataFrame) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ohlcv_1m (ts, symbol, open, high, low, close, volume, vwap, trade_count) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    r.ts.to_pydatetime(),
                    r.symbol,
                    r.open,
                    r.high,
                    r.low,
                    r.close,
                    r.volume,
                    None if pd.isna(r.vwap) else r.vwap,
                    int(r.trade_count),
                )
                for r in bars.itertuples(index=False)
            ],
        )


def _load(conn: psycopg.Connection[Any]) -> None:
    _insert(conn, _aapl_bars())
    # Timestamps that are not minute ends (boundaries to the microsecond, a NULL vwap, a zero
    # volume), and a dense grid across a day boundary and a US DST change: only the identity of
    # the two forms is checked on these.
    edges = [
        "2024-03-05 14:00:00",
        "2024-03-05 14:00:00.000001",
        "2024-03-05 14:00:30",
        "2024-03-05 14:00:59.999999",
        "2024-03-05 14:01:00",
        "2024-03-05 14:04:59.999999",
        "2024-03-05 14:05:00",
        "2024-03-05 14:05:00.000001",
        "2024-03-05 14:06:00",
        "2024-03-05 15:00:00",
        "2024-03-05 15:00:01",
        "2024-03-05 15:01:00",
    ]
    conn.execute(
        "INSERT INTO ohlcv_1m (ts, symbol, open, high, low, close, volume, vwap, trade_count) "
        "SELECT t, s, x, x + 1, x - 1, x + 0.5, CASE WHEN n %% 17 = 0 THEN 0 ELSE 10 END, "
        "       CASE WHEN n %% 5 = 0 THEN NULL ELSE 2 END, 1 "
        "  FROM (SELECT t, s, row_number() OVER (ORDER BY s, t) AS n, "
        "               (row_number() OVER (ORDER BY s, t))::float8 AS x "
        "          FROM (SELECT (e || '+00')::timestamptz AS t, 'EDGE' AS s "
        "                  FROM unnest(%s::text[]) e "
        "                UNION ALL "
        "                SELECT t, 'GRID' FROM generate_series("
        "                       '2023-12-31 22:00+00'::timestamptz, '2024-01-01 02:00+00', "
        "                       INTERVAL '13 seconds') t "
        "                UNION ALL "
        "                SELECT t, 'GRID' FROM generate_series("
        "                       '2024-03-10 05:00+00'::timestamptz, '2024-03-10 09:00+00', "
        "                       INTERVAL '17 seconds') t) u) g",
        (edges,),
    )


def _expected_from_bars(bars: pd.DataFrame, width: str) -> list[tuple[Any, ...]]:
    """Independent of SQL: a bar ending at e belongs to the bucket ending at e rounded up."""
    b = bars.assign(label=bars["ts"].dt.ceil(FREQ[width]), pv=bars["vwap"] * bars["volume"])
    rows = []
    for label, g in b.sort_values("ts").groupby("label"):
        volume = float(g["volume"].sum())
        priced = float(g.loc[g["vwap"].notna(), "volume"].sum())  # minutes with a vwap
        rows.append(
            (
                "AAPL",
                label.to_pydatetime(),
                float(g["open"].iloc[0]),
                float(g["high"].max()),
                float(g["low"].min()),
                float(g["close"].iloc[-1]),
                volume,
                float(g["pv"].sum()) / priced if priced else None,
                int(g["trade_count"].sum()),
            )
        )
    return rows


@pytest.mark.parametrize(("name", "width"), sorted(ROLLUPS.items()))
def test_cagg_select_returns_the_apache_fallback_rows(dsn: str, name: str, width: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _load(conn)
        assert conn.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = %s", (name,)
        ).fetchone() == ("VIEW",)
        for tz in ("UTC", "Asia/Kolkata", "America/New_York"):  # labels must not depend on it
            conn.execute(f"SET TimeZone = '{tz}'")
            community = conn.execute(
                f"SELECT {COLUMNS} FROM ({cagg_select(width)}) c ORDER BY symbol, ts"
            ).fetchall()
            apache = conn.execute(f"SELECT {COLUMNS} FROM {name} ORDER BY symbol, ts").fetchall()
            assert community == apache, tz
        by_symbol = {s: [r for r in community if r[0] == s] for s in ("AAPL", "EDGE", "GRID")}
        assert all(by_symbol.values())
        assert by_symbol["AAPL"] == _expected_from_bars(_aapl_bars(), width)
        if width == "5 minutes":  # the bar labelled 14:05 closes the bucket labelled 14:05
            row = next(r for r in by_symbol["AAPL"] if r[1] == pd.Timestamp("2024-03-05 14:05Z"))
            assert row[2:4] == (11.0, max(10.0 + (i * 7) % 13 for i in range(11, 16)))
            assert row[5] == 15.5
            assert [r[1] for r in by_symbol["AAPL"]][:2] == [
                pd.Timestamp("2024-03-05 13:50Z"),
                pd.Timestamp("2024-03-05 13:55Z"),
            ]
            assert next(r for r in by_symbol["AAPL"] if r[6] == 0.0)[7] is None
            # The vendor minute 14:02 adds its volume, not a zero price: the bucket's vwap is
            # weighted over the four priced minutes (with it in the denominator: 1.2 too low).
            bars = _aapl_bars().iloc[11:16]
            priced = bars[bars["vwap"].notna()]
            assert row[6] == float(bars["volume"].sum())
            assert row[7] == pytest.approx(
                float((priced["vwap"] * priced["volume"]).sum() / priced["volume"].sum())
            )
            assert row[7] > float((priced["vwap"] * priced["volume"]).sum() / row[6])


@pytest.mark.parametrize("width", sorted(ROLLUPS.values()))
def test_cagg_label_expression_is_immutable(dsn: str, width: str) -> None:
    """TimescaleDB refuses mutable target-list expressions in a cagg; a stored generated column
    applies the same rule. timestamptz +/- interval is STABLE, so the fallback's label fails."""
    ddl = (
        "CREATE TEMP TABLE probe_{n} "
        "(ts timestamptz, label timestamptz GENERATED ALWAYS AS ({e}) STORED)"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl.format(n="cagg", e=_label_expr(cagg_select(width))))
        with pytest.raises(psycopg.errors.InvalidObjectDefinition, match="immutable"):
            conn.execute(ddl.format(n="apache", e=_label_expr(rollup_select(width))))
