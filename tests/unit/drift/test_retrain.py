"""drift.retrain: the Job built from the template, the arguments, the mode, retries, local runs."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from kubernetes.client.exceptions import ApiException

from signalstack.drift.retrain import (
    DEFAULT_TEMPLATE,
    JOB_LABELS,
    LocalRetrainer,
    RetrainError,
    api_transient,
    build_job,
    load_template,
    resolve_mode,
    resolve_namespace,
    retry,
    training_args,
)

SCHEMA = Path(__file__).resolve().parents[2] / "integration/drift/schemas/job_batch_v1.json"
NOW = pd.Timestamp("2026-03-02 20:00:30", tz="UTC")


def test_training_args_name_the_models_and_a_window_ending_now() -> None:
    assert training_args(["regime"], pd.Timestamp("2026-03-02 15:00:30.7", tz="America/New_York"),
                         2) == [
        "--model", "regime", "--start", "2026-02-28T20:00:30+00:00",
        "--end", "2026-03-02T20:00:30+00:00",
    ]  # fmt: skip


def test_the_default_template_makes_a_valid_job_with_the_selector_labels() -> None:
    job = build_job(load_template(), ["regime", "anomaly"], 0.41, NOW, 20, image="img:1")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(job)] == []
    assert JOB_LABELS.items() <= job["metadata"]["labels"].items()
    assert JOB_LABELS.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert job["metadata"]["annotations"]["signalstack.io/max-psi"] == "0.4100"
    name = job["metadata"]["name"]
    assert name == "signalstack-retrain-20260302-200030" and len(name) <= 63
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1"
    assert container["args"][:3] == ["train", "--data-source", "store"]
    # the template itself is left as it was
    assert load_template()["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "train", "--data-source", "store",
    ]  # fmt: skip
    # the same window names the same Job: the API server refuses a second one (409)
    assert build_job(load_template(), ["regime"], 0.3, NOW, 20)["metadata"]["name"] == name


def test_a_template_generate_name_is_the_prefix_of_a_deterministic_name(tmp_path: Path) -> None:
    doc = load_template()
    doc["metadata"]["generateName"] = "retrain-"
    job = build_job(doc, ["regime"], 0.3, NOW, 20)
    assert "generateName" not in job["metadata"]
    assert job["metadata"]["name"].startswith("retrain-")
    assert job["metadata"]["name"] == build_job(doc, ["regime"], 0.3, NOW, 20)["metadata"]["name"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("apiVersion: v1\nkind: Pod\n", "expected a batch/v1 Job"),
        ("apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {containers: []}}}\n",
         "containers is empty"),
        ("key: [unclosed\n", "DRIFT_JOB_TEMPLATE"),
    ],
)  # fmt: skip
def test_a_bad_template_is_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    p = tmp_path / "job.yaml"
    p.write_text(text)
    with pytest.raises(RetrainError, match=says):
        load_template(p)
    with pytest.raises(RetrainError, match="DRIFT_JOB_TEMPLATE"):
        load_template(tmp_path / "missing.yaml")


def test_the_default_template_ships_inside_the_package() -> None:
    assert DEFAULT_TEMPLATE.parent.name == "drift" and DEFAULT_TEMPLATE.is_file()


def test_mode_and_namespace_resolution(tmp_path: Path) -> None:
    assert resolve_mode("auto", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "kubernetes"
    assert resolve_mode("auto", {}) == "local"
    assert resolve_mode("off", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "off"
    sa = tmp_path / "namespace"
    assert resolve_namespace("", sa) == "default"
    sa.write_text("signalstack\n")
    assert resolve_namespace("", sa) == "signalstack"
    assert resolve_namespace("ml", sa) == "ml"


def test_retry_backs_off_on_transient_errors_only() -> None:
    sleeps: list[float] = []
    answers = iter([ApiException(status=503), ApiException(status=429), "ok"])

    def call() -> str:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    kw = {"what": "t", "attempts": 5, "base_s": 1.0, "cap_s": 1.5, "transient": api_transient}
    assert retry(call, sleep=sleeps.append, **kw) == "ok"  # type: ignore[arg-type]
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 0.75 <= sleeps[1] <= 1.5
    with pytest.raises(ApiException):  # 403 (RBAC): no second try
        retry(lambda: (_ for _ in ()).throw(ApiException(status=403)), sleep=sleeps.append,
              **kw)  # type: ignore[arg-type]  # fmt: skip
    assert len(sleeps) == 2
    with pytest.raises(ConnectionRefusedError):  # retried, then the last error
        retry(lambda: (_ for _ in ()).throw(ConnectionRefusedError()), sleep=sleeps.append,
              **kw)  # type: ignore[arg-type]  # fmt: skip
    assert len(sleeps) == 2 + 4


def _recorder(tmp_path: Path, exit_code: int = 0) -> tuple[list[str], Path]:
    out = tmp_path / "calls.jsonl"
    code = (f"import json, sys; open({str(out)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n'); "
            f"sys.exit({exit_code})")  # fmt: skip
    return [sys.executable, "-c", code, "train"], out


@pytest.mark.parametrize(("code", "action"), [(0, "ran"), (6, "ran"), (1, "failed")])
def test_local_mode_runs_the_command_once(tmp_path: Path, code: int, action: str) -> None:
    cmd, out = _recorder(tmp_path, code)
    got = LocalRetrainer(cmd, lookback_days=1).request(["anomaly"], 0.3, NOW)
    assert (got.action, got.returncode) == (action, code)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        ["train", *training_args(["anomaly"], NOW, 1)]
    ]


def test_local_mode_skips_while_another_retraining_holds_the_lock(tmp_path: Path) -> None:
    cmd, out = _recorder(tmp_path)

    @contextlib.contextmanager
    def held() -> Iterator[bool]:
        yield False

    got = LocalRetrainer(cmd, lock=held).request(["regime"], 0.3, NOW)
    assert got.action == "already_running" and not out.exists()


def test_local_mode_with_a_missing_command_is_a_clear_error() -> None:
    with pytest.raises(RetrainError, match="DRIFT_RETRAIN_COMMAND"):
        LocalRetrainer(["/nonexistent/signalstack-train"]).request(["regime"], 0.3, NOW)
    with pytest.raises(RetrainError, match="empty"):
        LocalRetrainer([])


def test_outside_a_cluster_the_kubernetes_mode_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from signalstack.drift.retrain import batch_api

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(
        RetrainError, match=r"in-cluster configuration unusable.*DRIFT_RETRAIN=local"
    ):
        batch_api(None)
    with pytest.raises(RetrainError, match="DRIFT_KUBECONFIG"):
        batch_api(tmp_path / "missing-kubeconfig")
