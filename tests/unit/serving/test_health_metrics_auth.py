"""``/health``, ``/metrics`` (latency per route and model, in-flight, model versions, classes,
anomaly scores), the optional bearer token (probes stay open) and CORS (off by default)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.unit.serving.serving_helpers import TestClient


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    return sum(
        v for lab, v in found.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


def test_health_lists_the_loaded_models(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["ready"] is True and h["errors"] == {}
    assert h["source"].startswith("directory ")
    assert set(h["models"]) == {"regime", "direction", "anomaly"}
    assert h["models"]["direction"]["kind"] == "lstm"
    assert h["models"]["regime"]["version"] == client.get("/v2/models/regime").json()["versions"][0]


def test_metrics(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/predict/regime", json={"symbol": "AAA"}).status_code == 200
    assert client.post("/predict/anomaly", json={"symbol": "BBB"}).status_code == 200
    assert client.post("/predict/anomaly", json={"symbol": "ZZZ"}).status_code == 404
    assert client.get("/v2/models/nope").status_code == 404
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    hist = "signalstack_serving_request_duration_seconds"
    assert value(m, hist + "_count", route="/predict/regime", model="regime") == 3
    assert value(m, hist + "_count", route="/predict/anomaly", model="anomaly") == 2
    assert value(m, hist + "_bucket", route="/predict/regime", model="regime", le="+Inf") == 3
    # a client-chosen name never becomes a label value
    assert value(m, hist + "_count", route="/v2/models/{model_name}", model="") == 1
    assert not any(lab.get("model") == "nope" for lab, _ in m[hist + "_count"])
    resp = "signalstack_serving_responses_total"
    assert value(m, resp, route="/predict/anomaly", status="404") == 1
    assert value(m, "signalstack_serving_requests_in_flight") == 1  # this scrape
    versions = {lab["model"]: lab["version"] for lab, v in m["signalstack_serving_model_info"]}
    assert versions["regime"] == client.get("/v2/models/regime").json()["versions"][0]
    assert value(m, "signalstack_serving_predictions_total", model="regime") == 3
    assert value(m, "signalstack_serving_predictions_total", model="anomaly") == 1
    assert value(m, "signalstack_serving_anomaly_score_count", model="anomaly") == 1
    assert value(m, "signalstack_serving_model_reloads_total", outcome="loaded") == 3


def test_auth_off_by_default(client: TestClient) -> None:
    assert client.post("/predict/regime", json={"symbol": "AAA"}).status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_bearer_token_guards_every_route_but_the_probes(app_factory: Any) -> None:
    client = app_factory(api_token="s3cret-token-123")
    for path in ("/v2/health/live", "/v2/health/ready", "/health"):
        assert client.get(path).status_code == 200, path
    for method, path in [("GET", "/v2"), ("GET", "/v2/models/regime"), ("GET", "/metrics"),
                         ("GET", "/v2/models/regime/ready"), ("POST", "/predict/regime"),
                         ("POST", "/v2/models/regime/infer")]:  # fmt: skip
        r = client.request(method, path, json={"symbol": "AAA"})
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["error"]
        r = client.request(method, path, json={"symbol": "AAA"},
                           headers={"Authorization": "Bearer wrong-token-123"})  # fmt: skip
        assert r.status_code == 401 and r.json()["error"] == "the bearer token is wrong"
    good = {"Authorization": "Bearer s3cret-token-123"}
    r = client.post("/predict/regime", json={"symbol": "AAA"}, headers=good)
    assert r.status_code == 200, r.text
    assert client.get("/metrics", headers=good).status_code == 200


def test_cors_off_by_default_and_on_when_configured(app_factory: Any) -> None:
    origin = {"Origin": "https://dash.example", "Access-Control-Request-Method": "POST"}
    off = app_factory()
    r = off.options("/predict/regime", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    on = app_factory(cors_origins="https://dash.example")
    r = on.options("/predict/regime", headers=origin)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://dash.example"
