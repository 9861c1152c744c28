"""Structured JSON logs that never contain a configured secret."""

from __future__ import annotations

import io
import json
import logging

from signalstack.logs import REDACTED, configure_logging, get_logger


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_records_are_json_with_standard_fields() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    get_logger("signalstack.test").info("bar_emitted", symbol="AAPL", n=3)
    (rec,) = _lines(out)
    assert rec["event"] == "bar_emitted"
    assert rec["level"] == "info"
    assert rec["logger"] == "signalstack.test"
    assert rec["symbol"] == "AAPL" and rec["n"] == 3
    assert str(rec["ts"]).endswith("Z")


def test_secrets_are_redacted_everywhere() -> None:
    key = "pk_live_0123456789abcdef"
    out = io.StringIO()
    configure_logging("DEBUG", "json", secrets=[key, "db-pass-xyz"], stream=out)
    log = get_logger("signalstack.test")
    log.info("connecting", url=f"https://api.example/v3/trades?apiKey={key}")
    log.info(f"auth with {key}")
    log.warning("db", password="db-pass-xyz", api_token="tok-abc-123", nested={"token": "x" * 8})
    logging.getLogger("third.party").error("libpq said: password db-pass-xyz rejected")
    text = out.getvalue()
    assert key not in text
    assert "db-pass-xyz" not in text
    assert "tok-abc-123" not in text
    recs = _lines(out)
    assert recs[0]["url"] == f"https://api.example/v3/trades?apiKey={REDACTED}"
    assert recs[2]["password"] == REDACTED and recs[2]["nested"] == {"token": REDACTED}
    assert recs[3]["logger"] == "third.party"
