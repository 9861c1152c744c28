"""What a drift pass does about a drifted model: create a retraining Job, train locally, or only
report (``DRIFT_RETRAIN``).

- ``kubernetes``: ONE ``batch/v1`` Job through the Kubernetes API (the official ``kubernetes``
  client; in-cluster configuration, or ``DRIFT_KUBECONFIG``), built from a template
  (``DRIFT_JOB_TEMPLATE``, default ``retrain-job.yaml`` beside this module). Before creating,
  the Jobs carrying :data:`JOB_LABELS` in the namespace are listed: while one of them has not
  finished (no ``Complete`` or ``Failed`` condition yet — a Job just created has none), no second
  is created. API calls are retried with capped exponential backoff on connection errors, 429
  and 5xx; any other answer (403: RBAC, 422: an invalid template) is an error naming it.
- ``local``: the training command (``DRIFT_RETRAIN_COMMAND``) runs here as a subprocess, once,
  under the store's named lock ``signalstack-retrain`` (a concurrent pass skips instead).
- ``off``: the pass reports the drift (table, gauges, exit status) and does nothing else.
- ``auto`` (default): ``kubernetes`` inside a pod (``KUBERNETES_SERVICE_HOST`` set), else ``local``.

Either way the training gets ``--model <the drifted models> --start <now − lookback> --end now``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, cast

import pandas as pd
import yaml

from signalstack.errors import SignalStackError
from signalstack.logs import get_logger

if TYPE_CHECKING:
    from kubernetes.client import BatchV1Api

    from signalstack.config import DriftSettings
    from signalstack.store.base import Store

log = get_logger(__name__)

DEFAULT_TEMPLATE: Final = Path(__file__).with_name("retrain-job.yaml")
#: set on every retraining Job; the selector a pass lists Jobs by
JOB_LABELS: Final[dict[str, str]] = {
    "app.kubernetes.io/name": "signalstack",
    "app.kubernetes.io/component": "retrain",
    "app.kubernetes.io/managed-by": "signalstack-drift",
}
LABEL_SELECTOR: Final = ",".join(f"{k}={v}" for k, v in JOB_LABELS.items())
NAME_PREFIX: Final = "signalstack-retrain"
LOCK_NAME: Final = "signalstack-retrain"
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT_S: Final = 30.0

Action = Literal["created", "already_running", "ran", "failed", "skipped", "reported"]
T = TypeVar("T")


class RetrainError(SignalStackError):
    """A retraining could not be requested (API refused, template invalid, command missing)."""

    exit_code = 1


@dataclass(frozen=True)
class RetrainOutcome:
    mode: str  # kubernetes | local | off
    action: Action
    detail: str
    job_name: str | None = None
    returncode: int | None = None


class Retrainer(Protocol):
    mode: str

    def request(self, models: Sequence[str], max_psi: float, now: pd.Timestamp) -> RetrainOutcome:
        """Retrain ``models`` (they drifted; ``max_psi`` the largest input PSI)."""
        ...


def training_args(models: Sequence[str], now: pd.Timestamp, lookback_days: int) -> list[str]:
    """``--model a,b --start <now − lookback> --end <now>`` (ISO 8601, UTC)."""
    end = pd.Timestamp(now).tz_convert("UTC").floor("s")
    start = end - pd.Timedelta(days=lookback_days)
    return ["--model", ",".join(models), "--start", start.isoformat(), "--end", end.isoformat()]


def _short(err: BaseException) -> str:
    """An API error as ``<status> <reason>`` (not its headers and body), others as they print."""
    status, reason = getattr(err, "status", None), getattr(err, "reason", None)
    if isinstance(status, int) and reason:
        return f"{status} {reason}"
    return f"{type(err).__name__}: {err}"


def retry(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int,
    base_s: float,
    cap_s: float,
    transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried on transient errors with capped exponential backoff (and jitter);
    the last transient error, or any other, propagates."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:
            if attempt == attempts or not transient(err):
                raise
            delay = min(cap_s, base_s * 2 ** (attempt - 1)) * (0.5 + secrets.randbelow(500) / 1000)
            log.warning("drift_retry", what=what, attempt=attempt, error=_short(err),
                        delay_s=round(delay, 3))  # fmt: skip
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --- kubernetes ---------------------------------------------------------------------------------


def load_template(path: Path | None = None) -> dict[str, Any]:
    """The Job template (YAML); RetrainError when it is not a batch/v1 Job with a container."""
    p = Path(path) if path is not None else DEFAULT_TEMPLATE
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RetrainError(f"DRIFT_JOB_TEMPLATE {p}: {err}") from None
    if not isinstance(doc, dict) or doc.get("apiVersion") != "batch/v1" or doc.get("kind") != "Job":
        raise RetrainError(f"DRIFT_JOB_TEMPLATE {p}: expected a batch/v1 Job manifest")
    containers = (((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    )
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise RetrainError(f"DRIFT_JOB_TEMPLATE {p}: spec.template.spec.containers is empty")
    return doc


def job_name(now: pd.Timestamp, prefix: str = f"{NAME_PREFIX}-") -> str:
    """``<prefix><YYYYmmdd-HHMMSS>`` of the pass's window end (a DNS label): deterministic, so
    two passes for the same window, or a create retried after its answer was lost, name the
    same Job and the API server refuses the second (409) instead of starting two."""
    stamp = pd.Timestamp(now).tz_convert("UTC").strftime("%Y%m%d-%H%M%S")
    return f"{prefix}{stamp}"


def build_job(
    template: Mapping[str, Any],
    models: Sequence[str],
    max_psi: float,
    now: pd.Timestamp,
    lookback_days: int,
    image: str = "",
) -> dict[str, Any]:
    """The Job to create: a copy of the template with name, labels, annotations and the
    training arguments filled in (see ``retrain-job.yaml``)."""
    job = copy.deepcopy(dict(template))
    meta = job.setdefault("metadata", {}) or {}
    job["metadata"] = meta
    meta.pop("namespace", None)  # the API path says where
    # a template's generateName becomes the prefix of the deterministic name (a server-made
    # random name would let a retried create start a second Job)
    prefix = meta.pop("generateName", None) or f"{NAME_PREFIX}-"
    meta["name"] = job_name(now, prefix)
    meta["labels"] = {**(meta.get("labels") or {}), **JOB_LABELS}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        "signalstack.io/drifted-models": ",".join(models),
        "signalstack.io/max-psi": f"{max_psi:.4f}",
    }
    pod_meta = job["spec"]["template"].setdefault("metadata", {}) or {}
    job["spec"]["template"]["metadata"] = pod_meta
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **JOB_LABELS}
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [
        *(container.get("args") or []),
        *training_args(models, now, lookback_days),
    ]
    if image:
        container["image"] = image
    return job


def _status_message(body: Any) -> str:
    """The ``message`` of the API server's Status answer, else the body's start."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else text[:300]


def _name(job: Any) -> str:
    return str(getattr(getattr(job, "metadata", None), "name", None) or "?")


def _finished(job: Any) -> bool:
    conditions = getattr(getattr(job, "status", None), "conditions", None) or []
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions)


def api_transient(err: BaseException) -> bool:
    """Connection errors, timeouts, 429 and 5xx answers: worth another try."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(err, ApiException):
        return err.status in (0, 429) or err.status >= 500
    return isinstance(err, HTTPError | OSError)


def batch_api(kubeconfig: Path | None = None) -> BatchV1Api:
    """A BatchV1Api: from ``kubeconfig`` when given, else the pod's in-cluster configuration."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), client_configuration=cfg
            )
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as err:
        where = f"DRIFT_KUBECONFIG {kubeconfig}" if kubeconfig else "in-cluster configuration"
        raise RetrainError(
            f"Kubernetes {where} unusable: {err} (outside a cluster set DRIFT_RETRAIN=local or "
            "off, or DRIFT_KUBECONFIG)"
        ) from None
    return client.BatchV1Api(client.ApiClient(cfg))


def resolve_namespace(configured: str, sa_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """``DRIFT_NAMESPACE``, else the pod's own namespace, else ``default``."""
    if configured:
        return configured
    with contextlib.suppress(OSError):
        ns = sa_file.read_text().strip()
        if ns:
            return ns
    return "default"


class KubernetesRetrainer:
    """Creates one retraining Job, never a second while one is unfinished."""

    mode = "kubernetes"

    def __init__(
        self,
        api: BatchV1Api,
        namespace: str,
        template: Mapping[str, Any],
        *,
        lookback_days: int = 20,
        image: str = "",
        attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.template = template
        self.lookback_days = lookback_days
        self.image = image
        self._retry: dict[str, Any] = {
            "attempts": attempts,
            "base_s": backoff_base_s,
            "cap_s": backoff_cap_s,
            "transient": api_transient,
            "sleep": sleep,
        }

    def _call(self, what: str, call: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException

        try:
            return retry(call, what=what, **self._retry)
        except ApiException as err:
            raise RetrainError(
                f"Kubernetes API: {what} in namespace {self.namespace!r} answered {err.status} "
                f"{err.reason}: {_status_message(err.body)}"
            ) from None
        except Exception as err:
            if api_transient(err):
                raise RetrainError(f"Kubernetes API unreachable: {what}: {err}") from None
            raise

    def unfinished_jobs(self) -> list[str]:
        """Names of the retraining Jobs (by :data:`LABEL_SELECTOR`) that have not finished."""
        jobs = self._call(
            "list jobs",
            lambda: self.api.list_namespaced_job(
                self.namespace, label_selector=LABEL_SELECTOR, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return [_name(j) for j in jobs.items or [] if not _finished(j)]

    def request(self, models: Sequence[str], max_psi: float, now: pd.Timestamp) -> RetrainOutcome:
        running = self.unfinished_jobs()
        if running:
            log.info("drift_retrain_already_running", jobs=running, namespace=self.namespace)
            return RetrainOutcome(
                self.mode, "already_running", f"job {running[0]} has not finished", running[0]
            )
        body = build_job(self.template, models, max_psi, now, self.lookback_days, self.image)
        wanted = str(body["metadata"]["name"])

        def create() -> Any:
            from kubernetes.client.exceptions import ApiException

            try:
                # a manifest dict is sent as is (the client serialises dicts unchanged)
                return self.api.create_namespaced_job(
                    self.namespace, cast(Any, body), _request_timeout=REQUEST_TIMEOUT_S
                )
            except ApiException as err:
                if err.status == 409:  # this window's Job exists: another pass, or our retry
                    return None
                raise

        created = self._call("create job", create)
        if created is None:
            log.info("drift_retrain_job_exists", job=wanted, namespace=self.namespace)
            return RetrainOutcome(
                self.mode, "already_running", f"job {wanted} exists for this window", wanted
            )
        name = _name(created)
        log.info("drift_retrain_job_created", job=name, namespace=self.namespace, models=models)
        return RetrainOutcome(self.mode, "created", f"created job {name}", name)


# --- local --------------------------------------------------------------------------------------


class LocalRetrainer:
    """Runs the training command here, once, under the store's ``signalstack-retrain`` lock."""

    mode = "local"

    def __init__(
        self,
        command: Sequence[str],
        *,
        lookback_days: int = 20,
        timeout_s: float | None = None,
        lock: Callable[[], contextlib.AbstractContextManager[bool]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not command:
            raise RetrainError("DRIFT_RETRAIN_COMMAND is empty")
        self.command = list(command)
        self.lookback_days = lookback_days
        self.timeout_s = timeout_s
        self.lock = lock
        self.env = dict(env) if env is not None else None

    def request(self, models: Sequence[str], max_psi: float, now: pd.Timestamp) -> RetrainOutcome:
        with self.lock() if self.lock is not None else contextlib.nullcontext(True) as held:
            if not held:
                return RetrainOutcome(self.mode, "already_running", "another retraining holds "
                                      f"the store lock {LOCK_NAME!r}")  # fmt: skip
            argv = [*self.command, *training_args(models, now, self.lookback_days)]
            log.info("drift_retrain_local_start", argv=argv)
            started = time.monotonic()
            try:
                res = subprocess.run(argv, check=False, timeout=self.timeout_s, env=self.env)
            except FileNotFoundError as err:
                raise RetrainError(f"DRIFT_RETRAIN_COMMAND: {err}") from None
            except subprocess.TimeoutExpired:
                return RetrainOutcome(self.mode, "failed",
                                      f"timed out after {self.timeout_s:g} s")  # fmt: skip
            seconds = time.monotonic() - started
            # `signalstack train`: 0 a champion moved, 6 every champion stayed: both ran
            ok = res.returncode in (0, 6)
            log.info("drift_retrain_local_done", returncode=res.returncode, seconds=seconds)
            return RetrainOutcome(
                self.mode,
                "ran" if ok else "failed",
                f"{shlex.join(argv)} exited {res.returncode} after {seconds:.0f} s",
                returncode=res.returncode,
            )


class ReportOnly:
    mode = "off"

    def request(self, models: Sequence[str], max_psi: float, now: pd.Timestamp) -> RetrainOutcome:
        return RetrainOutcome(self.mode, "reported", "DRIFT_RETRAIN=off: reported only")


def resolve_mode(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """``auto`` → ``kubernetes`` inside a pod (KUBERNETES_SERVICE_HOST), else ``local``."""
    if configured != "auto":
        return configured
    env = os.environ if environ is None else environ
    return "kubernetes" if env.get("KUBERNETES_SERVICE_HOST") else "local"


def make_retrainer(cfg: DriftSettings, store: Store | None = None) -> Retrainer:
    mode = resolve_mode(cfg.retrain)
    if mode == "off":
        return ReportOnly()
    if mode == "local":
        return LocalRetrainer(
            shlex.split(cfg.retrain_command),
            lookback_days=cfg.retrain_lookback_days,
            timeout_s=cfg.retrain_timeout_s,
            lock=(lambda: store.try_lock(LOCK_NAME)) if store is not None else None,
        )
    return KubernetesRetrainer(
        batch_api(cfg.kubeconfig),
        resolve_namespace(cfg.namespace),
        load_template(cfg.job_template),
        lookback_days=cfg.retrain_lookback_days,
        image=cfg.job_image,
        attempts=cfg.api_attempts,
        backoff_base_s=cfg.backoff_base_s,
        backoff_cap_s=cfg.backoff_cap_s,
    )


__all__ = [
    "DEFAULT_TEMPLATE",
    "JOB_LABELS",
    "LABEL_SELECTOR",
    "KubernetesRetrainer",
    "LocalRetrainer",
    "ReportOnly",
    "RetrainError",
    "RetrainOutcome",
    "Retrainer",
    "batch_api",
    "build_job",
    "load_template",
    "make_retrainer",
    "resolve_mode",
    "resolve_namespace",
    "training_args",
]
