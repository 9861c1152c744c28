"""The model repository over a bundle directory: readiness is 503 until the models load, a
new bundle is hot-swapped with no failed request, a broken one leaves the old one serving."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.unit.serving.serving_helpers import Trained, copy_bundles, hammer, running_server

from signalstack.config import ServingSettings, Settings
from signalstack.inference.bundle import META_FILE
from signalstack.serving.app import create_app
from signalstack.serving.errors import ModelNotFoundError, ModelNotReadyError
from signalstack.serving.repository import DirectorySource, ModelRepository
from signalstack.store.duckdb import DuckDBStore


def wait_until(check: Any, what: str, timeout_s: float = 60.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def republish(src: Path, dst: Path, tag: str) -> None:
    """The same model re-exported: a new bundle.json (so a new version), written last."""
    meta = json.loads((src / META_FILE).read_text())
    meta["training"] = {**meta["training"], "run_id": tag}
    shutil.copy(src / "model.onnx", dst / "model.onnx")
    tmp = dst / ".bundle.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(dst / META_FILE)


def test_readiness_is_503_until_the_models_load(app_factory: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    client = app_factory(wait=False, directory=empty, reload_interval_s=0.1)
    r = client.get("/v2/health/ready")
    assert r.status_code == 503 and r.json() == {"ready": False}
    assert client.get("/health").status_code == 503
    r = client.get("/v2/models/regime/ready")
    assert r.status_code == 503 and r.json() == {"name": "regime", "ready": False}
    r = client.post("/predict/regime", json={"symbol": "AAA"})
    assert r.status_code == 503 and "not loaded" in r.json()["error"]
    assert client.get("/v2/health/live").status_code == 200

    copy_bundles(empty, ("regime", "direction", "anomaly"))
    wait_until(lambda: client.get("/v2/health/ready").status_code == 200, "readiness")
    assert client.post("/predict/regime", json={"symbol": "AAA"}).status_code == 200


def test_a_model_the_source_lacks_is_unready_the_others_serve(
    app_factory: Any, tmp_path: Path
) -> None:
    d = copy_bundles(tmp_path / "two", ("regime", "anomaly"))
    client = app_factory(directory=d)
    assert client.get("/v2/health/ready").status_code == 200
    r = client.get("/v2/models/direction/ready")
    assert r.status_code == 503
    r = client.post("/predict/direction", json={"symbol": "AAA"})
    assert r.status_code == 503 and "has no version of it" in r.json()["error"]


def test_a_model_published_later_that_fails_to_load_leaves_the_server_ready(
    models: Trained, tmp_path: Path
) -> None:
    d = copy_bundles(tmp_path / "one", ("regime",))
    repo = ModelRepository(DirectorySource(d), ("regime", "direction"))
    repo.poll_once()
    assert repo.is_ready()
    copy_bundles(d, ("direction",))  # a first direction champion appears, and is broken
    (d / "direction" / "model.onnx").write_bytes(b"not a model")
    assert repo.poll_once() == {}
    assert "failed to load" in repo.errors["direction"]
    assert repo.is_ready()  # regime keeps the replica in rotation


def test_unknown_and_unserved_models(models: Trained, tmp_path: Path) -> None:
    repo = ModelRepository(DirectorySource(copy_bundles(tmp_path / "m")), ("regime",))
    try:
        repo.start()
        assert repo.wait_ready(60)
        assert repo.get("regime").bundle.meta.kind == "xgboost"
        with pytest.raises(ModelNotFoundError, match="served here: regime"):
            repo.get("direction")
        with pytest.raises(ValueError, match="models must be some of"):
            ModelRepository(DirectorySource(tmp_path), ("sentiment",))
    finally:
        repo.stop()
    lonely = ModelRepository(DirectorySource(tmp_path / "nothing"), ("regime",))
    with pytest.raises(ModelNotReadyError, match="loading"):
        lonely.get("regime")


def test_a_broken_bundle_keeps_the_old_one_serving(models: Trained, tmp_path: Path) -> None:
    d = copy_bundles(tmp_path / "m", ("regime",))
    repo = ModelRepository(DirectorySource(d), ("regime",))
    repo.poll_once()
    old = repo.get("regime").version
    (d / "regime" / "model.onnx").write_bytes(b"not a model")
    republish_meta = json.loads((d / "regime" / META_FILE).read_text())
    republish_meta["training"]["run_id"] = "broken"
    (d / "regime" / META_FILE).write_text(json.dumps(republish_meta))
    assert repo.poll_once() == {}
    assert repo.get("regime").version == old
    assert "failed to load" in repo.errors["regime"]
    assert repo.is_ready()  # still serving the old version... but it reports the failure
    assert "regime" in repo.describe()["errors"]
    shutil.rmtree(d / "regime")
    copy_bundles(d, ("regime",))
    republish(models.bundle_dir("regime"), d / "regime", "fixed")
    assert set(repo.poll_once()) == {"regime"}
    assert "regime" not in repo.errors


def test_hot_swap_under_requests_fails_none(
    models: Trained, feature_store: DuckDBStore, tmp_path: Path
) -> None:
    """New bundles land while a client (its own process) keeps asking: every answer is a 200,
    from the old version until the swap and from the new one after it."""
    d = copy_bundles(tmp_path / "m")
    settings = Settings(serving=ServingSettings(reload_interval_s=0.05))
    repo = ModelRepository(DirectorySource(d), interval_s=0.05)
    names = ("regime", "direction", "anomaly")
    with running_server(create_app(settings, repo, feature_store)) as url:
        assert repo.wait_ready(60)
        before = {n: repo.get(n).version for n in names}
        client = hammer(url, 3000, names)
        assert client.stdout is not None
        answers: list[list[Any]] = []
        try:
            for line in client.stdout:  # a few answers from the old versions first
                answers.append(json.loads(line))
                if len(answers) == 6:
                    break
            for n in names:
                republish(models.bundle_dir(n), d / n, f"second-{n}")
            wait_until(lambda: all(repo.get(n).version != before[n] for n in names), "the swap")
            after = {n: repo.get(n).version for n in names}
            seen: dict[str, list[str]] = {n: [] for n in names}
            for line in client.stdout:  # until every model answered from its new version
                answers.append(json.loads(line))
                name, _, version, _ = answers[-1]
                seen[name].append(version)
                if all(after[n] in seen[n][-1:] for n in names):
                    break
        finally:
            client.terminate()
            client.wait(30)
        assert [a for a in answers if a[1] != 200] == []
        for n in names:
            versions = [a[2] for a in answers if a[0] == n]
            assert versions[0] == before[n] and versions[-1] == after[n]
            switch = versions.index(after[n])  # one switch: old, ..., old, new, ..., new
            assert set(versions[:switch]) == {before[n]}
            assert set(versions[switch:]) == {after[n]}
