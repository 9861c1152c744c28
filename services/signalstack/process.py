"""Process-wide tuning shared by the long-running services (ingest, sink)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Hot paths allocate a few tracked objects per message (dedup keys, decoded structs,
    batch lists). Freeze what start-up allocated (modules, pandas, numpy: hundreds of thousands
    of objects) so the collector's full passes skip it, and collect the young generation every
    20,000 allocations instead of 700. Measured: ~10 % of the ingest hot path, and in the sink
    a full collection over the unfrozen heap stalled a batch for ~130 ms."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
