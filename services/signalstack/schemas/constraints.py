"""msgspec constraint types for the trade fast paths (ingest frames, sink values).

Each is a strict subset of what :func:`signalstack.schemas.trade.check_trade` accepts for the
field it types, so a value msgspec accepts is one the general path would accept too; anything
else falls back to that path, which gives the exact reject reason.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from signalstack.schemas.trade import INT64_MAX, INT64_MIN

I64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
# Finite and positive (JSON ints are accepted as floats); the bound only keeps the fast path off
# absurd values (the general path still judges them).
POSITIVE_FLOAT = Annotated[float, Meta(gt=0.0, lt=1e300)]
# Integral sizes only up to 2**53, where a double (what every consumer reads) is still exact.
POSITIVE_INT = Annotated[int, Meta(gt=0, le=2**53)]
NON_EMPTY = Annotated[str, Meta(min_length=1)]
