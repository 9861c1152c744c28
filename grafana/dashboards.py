"""The dashboards, built with Grafana's foundation SDK (builders + models): one for the
market data and the models (TimescaleDB), one for the pipeline's services (Prometheus). Both
reference their datasources through the variables ``ds_timescale`` and ``ds_prometheus`` (any
uid works: pick them in the UI or provision them, grafana/provisioning/) and show times in
America/New_York."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    candlestick,
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import candlestick as candlestick_model
from grafana_foundation_sdk.models import dashboard as model

from grafana import queries as q

TIMEZONE = "America/New_York"
POSTGRES = "grafana-postgresql-datasource"
TIMESCALE = model.DataSourceRef(type_val=POSTGRES, uid="${ds_timescale}")
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="${ds_prometheus}")


class SqlDataquery(cogvariants.Dataquery):
    """A PostgreSQL (TimescaleDB) panel query: the SDK has no builder for this datasource."""

    def __init__(self, query: q.SqlQuery) -> None:
        self.query = query

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": {"type": POSTGRES, "uid": "${ds_timescale}"},
            "editorMode": "code",
            "format": self.query.format,
            "rawQuery": True,
            "rawSql": self.query.sql,
            "refId": self.query.ref_id,
        }


class Sql(cogbuilder.Builder[SqlDataquery]):
    def __init__(self, query: q.SqlQuery) -> None:
        self._internal = SqlDataquery(query)

    def build(self) -> SqlDataquery:
        return self._internal


def prom(query: q.PromQuery) -> prometheus.Dataquery:
    b = prometheus.Dataquery().expr(query.expr).ref_id(query.ref_id)
    if query.legend:
        b = b.legend_format(query.legend)
    b = b.instant() if query.instant else b.range()
    return b


def _variables(symbols: bool) -> list[cogbuilder.Builder[model.VariableModel]]:
    out: list[cogbuilder.Builder[model.VariableModel]] = [
        dashboard.DatasourceVariable("ds_timescale").label("TimescaleDB").type(POSTGRES),
        dashboard.DatasourceVariable("ds_prometheus").label("Prometheus").type("prometheus"),
    ]
    if symbols:
        out.append(
            dashboard.QueryVariable("symbol")
            .label("Symbol")
            .datasource(TIMESCALE)
            .query(q.SYMBOLS)
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        )
    return out


def _board(uid: str, title: str, description: str, symbols: bool) -> dashboard.Dashboard:
    b = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["signalstack"])
        .timezone(TIMEZONE)
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    for v in _variables(symbols):
        b = b.with_variable(v)
    return b


def _series(title: str, unit: str, *targets: Any, ds: model.DataSourceRef) -> timeseries.Panel:
    p = timeseries.Panel().title(title).unit(unit).datasource(ds).height(8).span(12)
    for t in targets:
        p = p.with_target(t)
    return p


def market() -> dashboard.Dashboard:
    b = _board(
        "signalstack-market",
        "SignalStack — market and models",
        "Trades, bars with anomalies, features, predictions against what happened, drift and "
        "backfills, from TimescaleDB; rates from Prometheus.",
        symbols=True,
    )
    b = b.with_row(dashboard.Row("Live"))
    b = b.with_panel(
        table.Panel()
        .title("Live trade feed ($symbol)")
        .datasource(TIMESCALE)
        .with_target(Sql(q.TRADE_FEED))
        .height(8)
        .span(12)
    )
    b = b.with_panel(
        _series(
            "Ticks per second",
            "ops",
            prom(q.TICKS_IN),
            prom(q.TICKS_ACKED),
            prom(q.TICKS_STORED),
            ds=PROMETHEUS,
        ).description("The feed, Kafka acknowledgements and stored rows (all symbols).")
    )
    b = b.with_panel(
        candlestick.Panel()
        .title("OHLCV 1m with anomalies ($symbol)")
        .datasource(TIMESCALE)
        .with_target(Sql(q.OHLCV))
        .with_target(Sql(q.ANOMALY_OVERLAY))
        .mode(candlestick_model.VizDisplayMode.CANDLES_VOLUME)
        .candle_style(candlestick_model.CandleStyle.CANDLES)
        .color_strategy(candlestick_model.ColorStrategy.OPEN_CLOSE)
        .include_all_fields(True)
        .override_by_name(
            "anomaly",
            [
                model.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
                model.DynamicConfigValue(id_val="custom.pointSize", value=9),
                model.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": "red"}
                ),
            ],
        )
        .height(10)
        .span(24)
    )
    b = b.with_panel(
        _series(
            "Ticks per second ($symbol, stored)",
            "ops",
            Sql(q.TICKS_PER_SECOND_SQL),
            ds=TIMESCALE,
        )
    )
    b = b.with_panel(
        heatmap.Panel()
        .title("Features, z-scored over the range ($symbol)")
        .datasource(TIMESCALE)
        .with_target(Sql(q.FEATURE_HEATMAP))
        .calculate(False)
        .height(8)
        .span(12)
    )
    b = b.with_row(dashboard.Row("Models"))
    b = b.with_panel(
        _series(
            "Direction: predicted vs realised ($symbol)",
            "percentunit",
            Sql(q.PREDICTED_VS_REALISED),
            ds=TIMESCALE,
        ).description(
            "Predicted probability of an up move over 5 minutes against the share of up moves."
        )
    )
    b = b.with_panel(
        _series("PSI per feature (drift job)", "none", Sql(q.PSI_PER_FEATURE), ds=TIMESCALE)
    )
    b = b.with_panel(
        bargauge.Panel()
        .title("PSI per model input (last pass)")
        .datasource(PROMETHEUS)
        .with_target(prom(q.PSI_LAST_PASS))
        .height(8)
        .span(12)
    )
    b = b.with_panel(
        _series(
            "Inference latency p50 / p99",
            "s",
            prom(q.INFERENCE_P50),
            prom(q.INFERENCE_P99),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(_series("Inference rate", "reqps", prom(q.INFERENCE_RATE), ds=PROMETHEUS))
    b = b.with_row(dashboard.Row("Backfill"))
    b = b.with_panel(
        table.Panel()
        .title("Backfill runs")
        .datasource(TIMESCALE)
        .with_target(Sql(q.BACKFILL_RUNS))
        .height(8)
        .span(12)
    )
    b = b.with_panel(
        table.Panel()
        .title("Backfill gaps (ranges)")
        .datasource(TIMESCALE)
        .with_target(Sql(q.BACKFILL_GAPS))
        .height(8)
        .span(12)
    )
    return b


def pipeline() -> dashboard.Dashboard:
    b = _board(
        "signalstack-pipeline",
        "SignalStack — pipeline",
        "The services from their /metrics (Prometheus) and the end-to-end latencies from the rows "
        "themselves (TimescaleDB).",
        symbols=False,
    )
    b = b.with_panel(
        stat.Panel()
        .title("Scrape targets up")
        .datasource(PROMETHEUS)
        .with_target(prom(q.SERVICES_UP))
        .height(4)
        .span(24)
    )
    b = b.with_row(dashboard.Row("Flow"))
    b = b.with_panel(
        _series(
            "Ticks per second",
            "ops",
            prom(q.TICKS_IN),
            prom(q.TICKS_ACKED),
            prom(q.TICKS_STORED),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(
        _series("Kafka consumer lag", "short", prom(q.SINK_LAG), prom(q.STREAM_LAG), ds=PROMETHEUS)
    )
    b = b.with_panel(
        _series(
            "Rejected to the DLQ",
            "ops",
            prom(q.REJECTED),
            prom(q.SINK_REJECTED),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(
        _series("DLQ rows by reason (table dlq)", "short", Sql(q.DLQ_BY_REASON), ds=TIMESCALE)
    )
    b = b.with_row(dashboard.Row("Sink"))
    b = b.with_panel(
        _series(
            "Sink write latency p50 / p99",
            "s",
            prom(q.SINK_WRITE_P50),
            prom(q.SINK_WRITE_P99),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(_series("Rows written", "rowsps", prom(q.SINK_ROWS), ds=PROMETHEUS))
    b = b.with_row(dashboard.Row("End to end"))
    b = b.with_panel(
        _series(
            "Tick → row (Prometheus)",
            "s",
            prom(q.TICK_TO_ROW_P99),
            prom(q.PRODUCE_P99),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(
        _series("SIP → ingest (rows)", "s", Sql(q.TICK_TO_INGEST), ds=TIMESCALE).description(
            "ts_ingest − ts_event of the stored trades."
        )
    )
    b = b.with_panel(_series("Bar end → feature row", "s", Sql(q.BAR_TO_FEATURE_ROW), ds=TIMESCALE))
    b = b.with_panel(
        _series("Bar end → prediction row", "s", Sql(q.BAR_TO_PREDICTION), ds=TIMESCALE)
    )
    b = b.with_row(dashboard.Row("Stream (Spark)"))
    b = b.with_panel(
        _series(
            "Spark rows per second",
            "rowsps",
            prom(q.SPARK_INPUT_RATE),
            prom(q.SPARK_PROCESSED_RATE),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(
        _series(
            "Spark batch duration and watermark delay",
            "s",
            prom(q.SPARK_BATCH_P99),
            prom(q.SPARK_WATERMARK_DELAY),
            ds=PROMETHEUS,
        )
    )
    b = b.with_panel(_series("Spark state rows", "short", prom(q.SPARK_STATE_ROWS), ds=PROMETHEUS))
    b = b.with_panel(
        stat.Panel()
        .title("Backfill (last run)")
        .datasource(PROMETHEUS)
        .with_target(prom(q.BACKFILL_LAST))
        .with_target(prom(q.BACKFILL_HEALED))
        .height(8)
        .span(12)
    )
    return b


BOARDS = {"signalstack-market": market, "signalstack-pipeline": pipeline}


def render(board: dashboard.Dashboard) -> str:
    """The dashboard's JSON as checked in (sorted keys, two-space indent, final newline)."""
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[str, str]:
    return {f"{uid}.json": render(make()) for uid, make in BOARDS.items()}


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a rendered dashboard, rows' panels included."""
    for p in doc.get("panels", []):
        yield p
        yield from p.get("panels", [])


def all_queries() -> Sequence[tuple[str, str, q.SqlQuery | q.PromQuery]]:
    """(dashboard uid, panel title, query) for every query of every panel, from the source."""
    out: list[tuple[str, str, q.SqlQuery | q.PromQuery]] = []
    by_sql = {v.sql: v for v in vars(q).values() if isinstance(v, q.SqlQuery)}
    by_expr = {v.expr: v for v in vars(q).values() if isinstance(v, q.PromQuery)}
    for name, text in rendered().items():
        doc = json.loads(text)
        for p in panels(doc):
            for t in p.get("targets") or []:
                query = by_sql[t["rawSql"]] if "rawSql" in t else by_expr[t["expr"]]
                out.append((name.removesuffix(".json"), p.get("title", ""), query))
    return out
