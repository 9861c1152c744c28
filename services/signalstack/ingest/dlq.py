"""Records for ``market.trades.dlq``: the raw input, why it was rejected, where it came from.

The JSON Schema is ``schemas/json/dlq_record.v1.json``. ``raw`` is the input exactly as received
(a whole frame when it did not parse, else the one offending event re-serialised); bytes that are
not UTF-8 are kept losslessly in ``raw_b64``.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

DLQ_SCHEMA_VERSION: Final = 1


def dlq_record(
    raw: str | bytes,
    reason: str,
    detail: str,
    source: str,
    ts_ns: int,
    symbol: str | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema_version": DLQ_SCHEMA_VERSION,
        "reason": reason,
        "detail": detail[:1000],
        "source": source,
        "ts": ts_ns,
        "symbol": symbol,
    }
    if isinstance(raw, bytes):
        try:
            rec["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            rec["raw"] = raw.decode("utf-8", errors="replace")
            rec["raw_b64"] = base64.b64encode(raw).decode()
    else:
        rec["raw"] = raw
    return rec


def encode(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)
