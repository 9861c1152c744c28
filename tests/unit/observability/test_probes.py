"""One readiness semantics: checks in order, the first failure's reason, a raising check is a
503 (never a crashed server), and the metrics payload is content-negotiated."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry, Counter

from signalstack.observability import metrics_payload, probe


def test_every_check_passing_is_ok() -> None:
    r = probe([lambda: (True, "ok"), lambda: (True, "fine")])
    assert (r.status_code, orjson.loads(r.body())) == (200, {"status": "ok"})


def test_no_checks_is_ok() -> None:
    assert probe([]).ok


def test_the_first_failing_check_gives_the_reason() -> None:
    called: list[str] = []

    def second() -> tuple[bool, str]:
        called.append("second")
        return False, "second"

    r = probe([lambda: (True, "ok"), lambda: (False, "no partitions assigned"), second])
    assert r.status_code == 503
    assert orjson.loads(r.body()) == {"status": "unavailable", "reason": "no partitions assigned"}
    assert called == []  # checks after the first failure do not run


def test_a_raising_check_is_unavailable_with_the_error() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    r = probe([broken])
    assert r.status_code == 503 and "boom" in orjson.loads(r.body())["reason"]


def test_a_failure_without_a_reason_still_says_something() -> None:
    assert orjson.loads(probe([lambda: (False, "")]).body())["reason"] == "not ready"


def test_metrics_payload_negotiates_openmetrics() -> None:
    reg = CollectorRegistry()
    Counter("signalstack_test_things", "Things.", registry=reg).inc()
    text, ctype = metrics_payload(reg)
    assert ctype.startswith("text/plain") and b"signalstack_test_things_total 1.0" in text
    om, octype = metrics_payload(reg, "application/openmetrics-text; version=1.0.0")
    assert octype.startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
