"""Edition-dependent schema: continuous aggregates, compression and policies.

Community edition (``timescaledb.license = 'timescale'``): continuous aggregates ohlcv_5m and
ohlcv_1h with refresh policies, trades compression (segment by symbol, after 1 day) and a
7-day retention policy. Apache edition: the same names as plain views and no compression;
retention is enforced by ``signalstack_apply_retention()`` from our scheduler. The statements
live in ``signalstack.store.edition`` so tests can plan them on either edition.
"""

from yoyo import step

from signalstack.store.edition import apply_edition

__depends__ = {"001_core_tables"}
__transactional__ = False

steps = [step(apply_edition)]
