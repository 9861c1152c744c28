"""The model repository: which bundle each served model runs, loaded and hot-swapped.

A :class:`ModelSource` says which version each model should serve now and fetches it:
:class:`RegistrySource` reads the MLflow registry alias (``champion``) of
``<MLFLOW_MODEL_PREFIX><model>``; :class:`DirectorySource` reads a local directory holding one
bundle directory per model (``regime/``, ``direction/``, ``anomaly/``), the embedded default.

:class:`ModelRepository` polls the source on a background thread: at start-up (readiness is
false until that first pass has loaded every model the source has) and then every
``SERVING_RELOAD_INTERVAL_S``. A model whose version moved is fetched into a fresh directory,
loaded and probed (``load_bundle``) *beside* the one serving, then swapped in by replacing the
dict of loaded models in one assignment: a request holds the model it looked up until it is
done, so no request fails or mixes two versions during a swap. A version that fails to load is
reported (log, ``signalstack_serving_model_reloads_total{outcome="failed"}``, ``/health``) and
the previous one keeps serving; it is tried again at the next poll.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from signalstack.config import redact_uri
from signalstack.inference.bundle import META_FILE, Bundle, load_bundle
from signalstack.logs import get_logger
from signalstack.serving.background import Background
from signalstack.serving.errors import ModelNotFoundError, ModelNotReadyError

if TYPE_CHECKING:
    from signalstack.serving.metrics import ServingMetrics

log = get_logger(__name__)

MODEL_NAMES: Final = ("regime", "direction", "anomaly")
#: first retries while nothing is loaded yet (a registry still starting), doubling to the interval
FIRST_RETRY_S: Final = 0.5


@dataclass(frozen=True)
class LoadedModel:
    """A model being served: its bundle and where it came from."""

    name: str
    version: str
    bundle: Bundle
    source: str
    loaded_at: dt.datetime


class ModelSource(ABC):
    """Where bundles come from."""

    #: shown by /health
    description: str = ""

    @abstractmethod
    def versions(self, names: Sequence[str]) -> dict[str, str | None]:
        """The version each model should serve now; None: the source has none for it."""

    @abstractmethod
    def fetch(self, name: str, version: str, dst: Path) -> tuple[Path, str]:
        """Put ``version`` of ``name`` under ``dst``; returns the bundle directory and a
        description of where it came from."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class DirectorySource(ModelSource):
    """``root/<model>/`` bundle directories; a model's version is the digest of its
    ``bundle.json`` (a new export writes a new one last, after its model file)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = f"directory {self.root}"

    def versions(self, names: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in names:
            meta = self.root / name / META_FILE
            out[name] = _digest(meta) if meta.is_file() else None
        return out

    def fetch(self, name: str, version: str, dst: Path) -> tuple[Path, str]:
        src = self.root / name
        target = dst / "bundle"
        shutil.copytree(src, target)
        got = _digest(target / META_FILE)
        if got != version or _digest(src / META_FILE) != version:
            raise RuntimeError(
                f"{src} changed while it was copied (bundle.json {version} → {got}); "
                "the next poll takes the new one"
            )
        return target, str(src)


class RegistrySource(ModelSource):
    """The MLflow registry: the version the alias points at, for ``<prefix><model>``."""

    def __init__(self, tracking_uri: str, alias: str = "champion", prefix: str = "") -> None:
        from signalstack.training.registry import ModelRegistry  # mlflow: only when used

        self.registry = ModelRegistry(tracking_uri, alias=alias)
        self.prefix = prefix
        self.description = f"MLflow {redact_uri(tracking_uri)} alias {alias!r}"

    def versions(self, names: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name in names:
            ref = self.registry.champion(self.prefix + name)
            out[name] = None if ref is None else ref.version
        return out

    def fetch(self, name: str, version: str, dst: Path) -> tuple[Path, str]:
        registered = self.prefix + name
        path = self.registry.download_bundle(registered, version, dst)
        return path, f"models:/{registered}/{version}"


class ModelRepository(Background):
    """The loaded models, kept in step with a :class:`ModelSource` by a polling thread."""

    thread_name = "model-repository"

    def __init__(
        self,
        source: ModelSource,
        names: Sequence[str] = MODEL_NAMES,
        *,
        interval_s: float = 30.0,
        metrics: ServingMetrics | None = None,
    ) -> None:
        unknown = sorted(set(names) - set(MODEL_NAMES))
        if unknown or not names:
            raise ValueError(f"models must be some of {', '.join(MODEL_NAMES)}; got {names}")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        super().__init__()
        self.source = source
        self.names = tuple(names)
        self.interval_s = interval_s
        self.metrics = metrics
        self._models: Mapping[str, LoadedModel] = {}  # replaced whole, never mutated
        self._available: dict[str, str | None] = {}
        # the models readiness waits for: those the source had at its first answer (a model
        # published later — a first champion — never takes a serving replica out of rotation)
        self._required: frozenset[str] | None = None
        self.errors: dict[str, str] = {}  # model (or "source") → the last failure, for /health
        self._dirs: dict[str, Path] = {}
        self._work = Path(tempfile.mkdtemp(prefix="signalstack-serving-"))
        self._first_pass = threading.Event()
        self._poll_lock = threading.Lock()

    # ---- reads (any thread) ------------------------------------------------------------------
    @property
    def models(self) -> Mapping[str, LoadedModel]:
        """The models serving now (a snapshot: a swap replaces the mapping)."""
        return self._models

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The loaded model ``name`` (at ``version`` when given)."""
        if name not in self.names:
            raise ModelNotFoundError(
                f"unknown model {name!r} (served here: {', '.join(self.names)})"
            )
        model = self._models.get(name)
        if model is None:
            why = (
                self.errors.get(name)
                or self.errors.get("source")
                or (
                    f"{self.source.description} has no version of it"
                    if self._first_pass.is_set() and self._available.get(name) is None
                    else "loading"
                )
            )
            raise ModelNotReadyError(f"model {name!r} is not loaded: {why}")
        if version is not None and version != model.version:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r} here (serving version "
                f"{model.version!r})"
            )
        return model

    def is_ready(self) -> bool:
        """True once every model the source had a version of at its first answer is loaded (at
        least one): a champion that does not load keeps the server unready. A model that
        appears later is served once it loads, and its failures show in ``errors``, but it
        never makes a ready server unready."""
        if not self._first_pass.is_set() or self._required is None:
            return False
        models = self._models
        return bool(models) and all(n in models for n in self._required)

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until :meth:`is_ready` (or ``timeout_s``); for start-up and tests."""
        if not self._first_pass.wait(timeout_s):
            return False
        return self.is_ready()

    # ---- the poll ------------------------------------------------------------------------------
    def poll_once(self) -> dict[str, str]:
        """Compare the source's versions with the loaded ones and load what moved; returns
        {model: version} of the models swapped in by this call."""
        with self._poll_lock:
            try:
                available = self.source.versions(self.names)
            except Exception as err:  # the registry is down: keep serving what is loaded
                self.errors["source"] = f"{self.source.description}: {err}"
                log.warning("serving.source_unavailable", error=str(err))
                self._first_pass.set()
                return {}
            self.errors.pop("source", None)
            self._available = dict(available)
            if self._required is None:
                self._required = frozenset(n for n in self.names if available.get(n) is not None)
            swapped: dict[str, str] = {}
            for name in self.names:
                version = available.get(name)
                current = self._models.get(name)
                if version is None or (current is not None and current.version == version):
                    if version is not None:
                        self.errors.pop(name, None)
                    continue
                got = self._load(name, version)
                if got is not None:
                    self._swap(*got)
                    swapped[name] = version
            self._first_pass.set()
            return swapped

    def _load(self, name: str, version: str) -> tuple[LoadedModel, Path] | None:
        dst = self._work / f"{name}-{uuid.uuid4().hex[:8]}"
        dst.mkdir(parents=True)
        try:
            path, where = self.source.fetch(name, version, dst)
            bundle = load_bundle(path)
            if bundle.meta.name != name:
                raise ValueError(f"the bundle at {where} is a {bundle.meta.name!r} model")
        except Exception as err:  # a broken bundle or a failed download: keep the old one
            shutil.rmtree(dst, ignore_errors=True)
            self.errors[name] = f"version {version} failed to load: {err}"
            log.error("serving.model_load_failed", model=name, version=version, error=str(err))
            if self.metrics is not None:
                self.metrics.load_failed(name)
            return None
        self.errors.pop(name, None)
        return LoadedModel(name, version, bundle, where, dt.datetime.now(dt.UTC)), dst

    def _swap(self, loaded: LoadedModel, directory: Path) -> None:
        previous = self._models.get(loaded.name)
        self._models = {**self._models, loaded.name: loaded}  # one assignment: atomic
        old_dir = self._dirs.get(loaded.name)
        self._dirs[loaded.name] = directory
        if old_dir is not None:  # the old bundle is in memory; its files are not needed
            shutil.rmtree(old_dir, ignore_errors=True)
        meta = loaded.bundle.meta
        if self.metrics is not None:
            self.metrics.model_loaded(
                loaded.name, loaded.version, meta.kind, meta.feature_set_version,
                None if previous is None else previous.version,
            )  # fmt: skip
        log.info(
            "serving.model_loaded", model=loaded.name, version=loaded.version,
            previous=None if previous is None else previous.version, source=loaded.source,
        )  # fmt: skip

    def _run(self) -> None:
        retry = FIRST_RETRY_S
        while not self._stop.is_set():
            self.poll_once()
            if self.is_ready():
                wait = self.interval_s
            else:  # nothing (or not everything) loaded yet: retry sooner, backing off
                wait, retry = min(retry, self.interval_s), min(retry * 2, self.interval_s)
            self._stop.wait(wait)

    # ---- lifecycle -------------------------------------------------------------------------------
    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling (a load in progress finishes first) and remove fetched bundle files."""
        self._halt(timeout_s)
        shutil.rmtree(self._work, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        """For /health: the source, what is loaded, what failed."""
        return {
            "source": self.source.description,
            "ready": self.is_ready(),
            "models": {
                n: {
                    "version": m.version,
                    "kind": m.bundle.meta.kind,
                    "feature_set_version": m.bundle.meta.feature_set_version,
                    "source": m.source,
                    "loaded_at": m.loaded_at.isoformat(timespec="seconds"),
                }
                for n, m in self._models.items()
            },
            "errors": dict(self.errors),
        }


__all__ = [
    "MODEL_NAMES",
    "DirectorySource",
    "LoadedModel",
    "ModelRepository",
    "ModelSource",
    "RegistrySource",
]
