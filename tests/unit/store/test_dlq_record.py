"""DlqRecord: the key that makes a replayed reject the same reject."""

from __future__ import annotations

from signalstack.store.base import NUL_ESCAPE, DlqRecord


def test_origin_keys_are_per_consumer_and_per_message() -> None:
    a = DlqRecord(source="market.trades", reason="bad_json", payload="{", origin="kafka:t:0:5@1")
    same = DlqRecord(source="market.trades", reason="other", payload="}", origin="kafka:t:0:5@1")
    assert a.dedup_key == same.dedup_key == "market.trades@kafka:t:0:5@1"
    spark = DlqRecord(source="stream.spark", reason="bad_json", payload="{", origin="kafka:t:0:5@1")
    recreated = DlqRecord(
        source="market.trades", reason="bad_json", payload="{", origin="kafka:t:0:5@2"
    )
    assert len({a.dedup_key, spark.dedup_key, recreated.dedup_key}) == 3


def test_content_keys_tell_apart_what_escaping_and_joining_would_merge() -> None:
    def key(**kw: str | None) -> str:
        return DlqRecord(**{"source": "s", "reason": "r", "payload": "p", **kw}).dedup_key

    assert key() == key() and key().startswith("content:")
    # A real NUL is stored as the text \u0000; the digest is of the input, so they differ.
    nul, text = DlqRecord("s", "r", "a\x00"), DlqRecord("s", "r", f"a{NUL_ESCAPE}")
    assert nul.payload == text.payload and nul.dedup_key != text.dedup_key
    assert key(reason="r|p", payload="") != key(reason="r", payload="|p")  # no separator merge
    assert key(key=None) != key(key="")
    assert key(detail="one") == key(detail="two")  # the detail is not the reject
