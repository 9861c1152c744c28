"""The models a drift pass checks: each one's PSI reference, read from its bundle.

A bundle's ``bundle.json`` (``signalstack.inference.bundle.BundleMeta``) carries the reference
distribution of the model's inputs on its training rows (``psi_reference``), the feature set
and the input names; the model file itself is not needed, so only the meta is read (and
validated against this build's feature set definitions).

Two sources, as for serving: the MLflow registry alias (``MLFLOW_MODEL_ALIAS``, default
``champion``) of ``MLFLOW_MODEL_PREFIX + name``, or a local directory holding one bundle
directory per model name (``DRIFT_MODEL_DIR``; the embedded default's layout). A model with no
champion (or no bundle directory) is skipped and said so; a bundle that cannot be read is an
error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from signalstack.drift.psi import PsiReference
from signalstack.errors import SignalStackError
from signalstack.inference.bundle import META_FILE, BundleError, BundleMeta

LOCAL = "local"  # the version of a bundle read from a directory


class DriftError(SignalStackError):
    """The drift job cannot do its work (a bundle unreadable, bad configuration...)."""

    exit_code = 2


@dataclass(frozen=True)
class MonitoredModel:
    """One model's PSI reference and where it came from."""

    name: str  # regime | direction | anomaly
    version: str  # the registry version, or LOCAL
    source: str  # e.g. "models:/regime@champion" or the bundle directory
    run_id: str
    feature_set_version: int
    input_names: tuple[str, ...]
    reference: PsiReference

    @property
    def label(self) -> str:
        """What the drift table's ``reference`` column says: model, version and run."""
        run = f" run {self.run_id}" if self.run_id else ""
        return f"{self.name} {self.version_label}{run}"

    @property
    def version_label(self) -> str:
        """``v3`` for a registry version, ``local`` for a bundle directory."""
        return self.version if self.version == LOCAL else f"v{self.version}"


def from_meta(meta: BundleMeta, version: str, source: str) -> MonitoredModel:
    """The reference of a bundle's meta; BundleError when it has none that fits its inputs."""
    try:
        ref = PsiReference.from_dict(meta.psi_reference)
    except ValueError as err:
        raise BundleError(f"bundle {source}: psi_reference: {err}") from None
    if ref.names != tuple(meta.input_names):
        raise BundleError(
            f"bundle {source}: psi_reference covers {', '.join(ref.names)}; the model's inputs "
            f"are {', '.join(meta.input_names)}"
        )
    return MonitoredModel(
        name=meta.name,
        version=version,
        source=source,
        run_id=str(meta.training.get("run_id", "") or ""),
        feature_set_version=int(meta.feature_set_version),
        input_names=tuple(meta.input_names),
        reference=ref,
    )


def read_bundle_dir(directory: Path, version: str, source: str | None = None) -> MonitoredModel:
    path = Path(directory) / META_FILE
    try:
        text = path.read_text()
        return from_meta(BundleMeta.from_json(text), version, source or str(directory))
    except OSError as err:
        raise DriftError(f"{directory} is not a model bundle: {err}") from None
    except BundleError as err:  # a corrupt bundle.json is bad input: exit 2, as documented
        raise DriftError(f"{directory}: {err}") from None


def from_directory(root: Path, names: Sequence[str]) -> tuple[list[MonitoredModel], dict[str, str]]:
    """Bundles ``root/<name>/``; returns the models found and, per model skipped, why."""
    found: list[MonitoredModel] = []
    skipped: dict[str, str] = {}
    if not Path(root).is_dir():
        raise DriftError(f"DRIFT_MODEL_DIR {root} is not a directory")
    for name in names:
        d = Path(root) / name
        if not (d / META_FILE).is_file():
            skipped[name] = f"no bundle in {d}"
            continue
        model = read_bundle_dir(d, LOCAL)
        if model.name != name:
            raise DriftError(f"{d} holds the {model.name!r} model, not {name!r}")
        found.append(model)
    return found, skipped


def from_registry(
    tracking_uri: str, alias: str, prefix: str, names: Sequence[str], work: Path
) -> tuple[list[MonitoredModel], dict[str, str]]:
    """The bundles the alias points at (downloaded under ``work``); a model without the alias
    is skipped."""
    from mlflow.exceptions import MlflowException

    from signalstack.config import redact_uri
    from signalstack.training.registry import ModelRegistry

    found: list[MonitoredModel] = []
    skipped: dict[str, str] = {}
    registered = ""
    try:
        registry = ModelRegistry(tracking_uri, alias=alias)
        for name in names:  # the registry resolves through its own client (no global URI)
            registered = prefix + name
            ref = registry.champion(registered)
            if ref is None:
                skipped[name] = f"no {alias!r} alias on registered model {registered!r}"
                continue
            d = registry.download_bundle(registered, ref.version, Path(work) / name)
            found.append(read_bundle_dir(d, ref.version, ref.uri))
    except (MlflowException, OSError) as err:  # MLflow's client has retried with backoff
        what = f" ({registered})" if registered else ""
        raise DriftError(f"MLflow registry {redact_uri(tracking_uri)}{what}: {err}") from None
    return found, skipped


__all__ = [
    "DriftError",
    "MonitoredModel",
    "from_directory",
    "from_meta",
    "from_registry",
    "read_bundle_dir",
]
