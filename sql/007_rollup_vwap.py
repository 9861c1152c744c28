"""ohlcv_5m / ohlcv_1h: a minute without a vwap (a vendor bar, sql/006_ohlcv_source.sql) no
longer counts in the vwap's denominator; the rollups made by 002 are rebuilt with the new
definition (Apache: the views replaced; Community: each continuous aggregate dropped, created
again and refreshed over all history). See ``signalstack.store.edition``.
"""

from yoyo import step

from signalstack.store.edition import rebuild_rollups

__depends__ = {"002_edition_features", "006_ohlcv_source"}
__transactional__ = False

steps = [step(rebuild_rollups)]
