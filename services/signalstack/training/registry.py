"""MLflow registered models and the gated ``champion`` alias, mirrored in the store.

A training run logs each fitted model as a candidate version of its registered model
(``regime``, ``direction``, ``anomaly``). :func:`decide` is the gate, a pure function: the
candidate is promoted only when its metric (higher is better) beats every baseline of the same
run and the current champion, both scored on the same holdout, by at least the margin.
:meth:`ModelRegistry.apply` carries the decision out: it moves the alias when promoted, tags
the model version and the run with the decision and its reason, logs the decision as JSON on
the run, and mirrors it in the store (``model_decisions`` always, ``model_registry`` when the
alias moved, so that table always shows the version the alias points at).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

if TYPE_CHECKING:
    from signalstack.store.base import Store

DEFAULT_ALIAS: Final = "champion"
# What a logged candidate needs to be loaded as a pyfunc elsewhere (signalstack itself must be
# installed too: the pyfunc wrapper loads the bundle with signalstack.inference.bundle).
RUNTIME_PACKAGES: Final = ("mlflow", "numpy", "pandas", "onnxruntime", "xgboost")
_EPS: Final = 1e-9  # a tie at exactly the margin passes despite float rounding (0.35 + 0.02)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _beats(candidate: float, other: float, margin: float) -> bool:
    return candidate - other >= margin - _EPS


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate (``promote``) and why, in plain words."""

    model: str
    metric: str
    candidate: float
    baselines: dict[str, float]
    champion: float | None
    champion_version: str | None
    margin: float
    promote: bool
    reason: str

    @property
    def outcome(self) -> str:
        """``"promoted"`` or ``"refused"`` (the value of the tags and the store's column)."""
        return "promoted" if self.promote else "refused"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN becomes None."""

        def clean(v: float | None) -> float | None:
            return None if v is None or math.isnan(v) else float(v)

        d = asdict(self)
        d["candidate"] = clean(self.candidate)
        d["champion"] = clean(self.champion)
        d["baselines"] = {k: clean(v) for k, v in self.baselines.items()}
        d["decision"] = self.outcome
        return d


def decide(
    model: str,
    metric: str,
    candidate: float,
    baselines: Mapping[str, float],
    champion: float | None,
    margin: float,
    champion_version: str | None = None,
) -> Decision:
    """The champion gate. Promote iff ``candidate`` is finite, at least ``margin`` above the
    best baseline, and (when there is a champion) at least ``margin`` above the champion's
    value on the same holdout. Higher is better.

    ``champion=None`` means there is no champion yet. A baseline whose value is not a number
    is no bar (listed as n/a), but with no finite baseline at all the candidate is refused:
    nothing shows it learnt anything. A champion whose value is not a number (it could not be
    scored on this holdout) cannot be beaten: the candidate is refused and the champion stays,
    since the gate moves the alias only on evidence."""
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"the margin must be a finite number >= 0, got {margin!r}")
    cand = float(candidate)
    base = {str(k): float(v) for k, v in baselines.items()}
    champ = None if champion is None else float(champion)
    who = f"champion v{champion_version}" if champion_version is not None else "the champion"
    stays = "no champion yet"
    if champ is not None:
        stays = f"champion stays v{champion_version}" if champion_version else "the champion stays"
    listed = ", ".join(f"{k} {_fmt(v)}" for k, v in base.items())

    def done(promote: bool, reason: str) -> Decision:
        return Decision(
            model=model,
            metric=metric,
            candidate=cand,
            baselines=base,
            champion=champ,
            champion_version=champion_version,
            margin=float(margin),
            promote=promote,
            reason=reason,
        )

    if not _finite(cand):
        return done(False, f"{metric} of the candidate is {_fmt(cand)}, not a finite "
                           f"number: refused, {stays}")  # fmt: skip
    finite = {k: v for k, v in base.items() if _finite(v)}
    if not finite:
        what = f"no baseline to beat ({listed})" if base else "no baselines to beat"
        return done(False, f"{metric} {_fmt(cand)}, but {what}: refused, {stays}")
    losers = {k: v for k, v in finite.items() if not _beats(cand, v, margin)}
    if losers:
        worst = ", ".join(f"{k} {_fmt(v)}" for k, v in losers.items())
        others = ", ".join(f"{k} {_fmt(v)}" for k, v in base.items() if k not in losers)
        also = f" (other baselines: {others})" if others else ""
        return done(
            False,
            f"{metric} {_fmt(cand)} does not beat {worst} by {margin:.3f}{also}: refused, {stays}",
        )
    beaten = ", ".join(f"{k} {_fmt(v)}" for k, v in finite.items())
    skipped = [k for k in base if k not in finite]
    head = f"{metric} {_fmt(cand)} beats {beaten} by ≥ {margin:.3f}"
    if skipped:
        head += f" ({', '.join(skipped)} n/a)"
    if champ is None:
        return done(True, f"{head}, no champion yet: promoted")
    if not _finite(champ):
        return done(False, f"{head}, but {who} scored {_fmt(champ)} on this holdout: {stays}")
    if _beats(cand, champ, margin):
        return done(True, f"{head} and {who} ({_fmt(champ)}) by ≥ {margin:.3f}: promoted")
    return done(False, f"{head}, but not {who} ({_fmt(champ)}) by {margin:.3f}: {stays}")


@dataclass(frozen=True)
class ChampionRef:
    """The model version an alias points at."""

    name: str
    version: str
    run_id: str
    source: str  # where MLflow keeps the model (e.g. models:/m-…)
    alias: str = DEFAULT_ALIAS

    @property
    def uri(self) -> str:
        """``models:/<name>@<alias>`` (what ``mlflow.pyfunc.load_model`` takes)."""
        return f"models:/{self.name}@{self.alias}"


def runtime_requirements(packages: Sequence[str] = RUNTIME_PACKAGES) -> list[str]:
    """Pinned requirements of the installed packages among ``packages`` (giving them
    explicitly spares MLflow its slow requirement inference, a subprocess loading the model)."""
    reqs = []
    for p in packages:
        try:
            reqs.append(f"{p}=={importlib.metadata.version(p)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return reqs


def _not_found(err: Exception) -> bool:
    """A missing registered model (RESOURCE_DOES_NOT_EXIST) or alias (MLflow's SQL registry
    answers INVALID_PARAMETER_VALUE "Registered model alias … not found.")."""
    code = getattr(err, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return code == "INVALID_PARAMETER_VALUE" and "not found" in str(err)


class ModelRegistry:
    """Registered models on one MLflow tracking server (or local store) with a gated alias."""

    def __init__(
        self, tracking_uri: str, alias: str = DEFAULT_ALIAS, store: Store | None = None
    ) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.alias = alias
        self.store = store
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # ---- reads -----------------------------------------------------------------------------------
    def champion(self, name: str) -> ChampionRef | None:
        """The version the alias points at; None when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, self.alias)
        except MlflowException as e:
            if _not_found(e):
                return None
            raise
        return ChampionRef(
            name=name,
            version=str(mv.version),
            run_id=str(mv.run_id or ""),
            source=str(mv.source or ""),
            alias=self.alias,
        )

    def champion_bundle(self, name: str, dst: Path) -> Path | None:
        """Download the champion's bundle directory (what :meth:`log_candidate` logged) under
        ``dst``; returns the directory holding ``bundle.json``, or None without a champion."""
        ref = self.champion(name)
        if ref is None:
            return None
        return self.download_bundle(name, ref.version, dst)

    def download_bundle(self, name: str, version: str, dst: Path) -> Path:
        """Download one version's bundle directory under ``dst`` (see :meth:`champion_bundle`)."""
        import mlflow.artifacts

        dst = Path(dst)
        dst.mkdir(parents=True, exist_ok=True)
        # Resolved with this registry's own client, down to the logged model's artifact
        # location: a models:/ URI would be resolved through MLflow's process-wide default
        # URIs (another server, or a ./mlflow.db created on the spot), whatever is passed.
        mv = self.client.get_model_version(name, str(version))
        source = str(mv.source or "")
        model_id = getattr(mv, "model_id", None) or (
            source.removeprefix("models:/") if source.startswith("models:/m-") else None
        )
        # MLflow 3: the version points at a logged model; else at a run's artifacts
        location = self.client.get_logged_model(model_id).artifact_location if model_id else source
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        )
        found = sorted(got.rglob("bundle.json"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"model {name} v{version} holds {len(found)} bundle.json files, expected one "
                f"(was it logged by ModelRegistry.log_candidate?)"
            )
        return found[0].parent

    # ---- writes ----------------------------------------------------------------------------------
    def log_candidate(
        self,
        name: str,
        bundle_dir: Path,
        input_example: pd.DataFrame,
        output_example: Any,
        *,
        pip_requirements: Sequence[str] | None = None,
        await_registration_for: int = 10,
    ) -> str:
        """Log the bundle as an MLflow pyfunc model (signature and input example) in the
        ACTIVE run, registered as a new version of ``name``; returns the version.

        ``output_example``: what the pyfunc returns (a frame, one column per class or
        ``score``), or ``Bundle.predict``'s array, turned into that frame. The signature also
        holds ``feature_set_version`` (see :func:`~signalstack.training.mlflow_model.
        model_examples`). The loaded pyfunc needs signalstack installed (it reads the bundle
        with ``load_bundle``)."""
        import mlflow
        import mlflow.pyfunc

        from signalstack.training.mlflow_model import BundleModel, model_examples

        if mlflow.active_run() is None:
            raise RuntimeError("log_candidate logs into the active run: call mlflow.start_run()")
        bundle_dir = Path(bundle_dir)
        if not (bundle_dir / "bundle.json").is_file():
            raise FileNotFoundError(f"{bundle_dir} is not a bundle (no bundle.json)")
        meta = json.loads((bundle_dir / "bundle.json").read_text())
        example, signature = model_examples(meta, input_example, output_example)
        with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
            # MLflow names the artifact after its directory: always "bundle", whatever the
            # caller's directory is called, so a download finds it in the same place.
            staged = Path(tmp) / "bundle"
            shutil.copytree(bundle_dir, staged)
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=BundleModel(),
                artifacts={"bundle": str(staged)},
                signature=signature,
                input_example=example,
                pip_requirements=list(pip_requirements or runtime_requirements()),
            )
        # Registered with this registry's own client: log_model(registered_model_name=...)
        # registers through MLflow's process-wide registry URI, which another component of the
        # process may have pointed elsewhere.
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if getattr(err, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        run = mlflow.active_run()
        mv = self.client.create_model_version(
            name,
            source=info.model_uri,
            run_id=run.info.run_id if run else None,
            model_id=info.model_id,
            await_creation_for=await_registration_for,
        )
        return str(mv.version)

    def apply(
        self,
        name: str,
        version: str,
        run_id: str,
        decision: Decision,
        metrics: Mapping[str, float],
    ) -> None:
        """Carry out the gate's decision on ``name`` v``version`` logged by ``run_id``: move
        the alias when promoted; tag the version and the run; log ``decisions/<name>.json`` on
        the run; mirror in the store (``model_decisions`` always, ``model_registry`` when
        promoted)."""
        if decision.model != name:
            raise ValueError(f"decision is about {decision.model!r}, not {name!r}")
        version = str(version)
        decided_at = dt.datetime.now(dt.UTC)
        previous = self.champion(name) if decision.promote else None
        tags: dict[str, str] = {
            "decision": decision.outcome,
            "decision_reason": decision.reason,
            "gate_metric": decision.metric,
            "gate_candidate": _fmt(decision.candidate),
            "gate_margin": f"{decision.margin:g}",
            "gate_champion": _fmt(decision.champion),
            "gate_champion_version": decision.champion_version or "",
            "gate_alias": self.alias,
            **{f"gate_baseline.{k}": _fmt(v) for k, v in decision.baselines.items()},
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        self.client.set_tag(run_id, f"decision.{name}", decision.outcome)
        self.client.set_tag(run_id, f"decision_reason.{name}", decision.reason)
        record = {
            **decision.to_dict(),
            "version": version,
            "run_id": run_id,
            "alias": self.alias,
            "decided_at": decided_at.isoformat(),
            "metrics": {k: (None if math.isnan(v) else float(v)) for k, v in metrics.items()},
        }
        self.client.log_dict(run_id, record, f"decisions/{name}.json")
        if self.store is not None:
            self.store.record_decision(
                name,
                version,
                run_id,
                "promoted" if decision.promote else "refused",
                decision.reason,
                decision.metric,
                decision.candidate,
                decision.baselines,
                decision.margin,
                champion_version=decision.champion_version,
                champion_value=decision.champion,
                decided_at=decided_at,
            )
            if decision.promote:
                self.store.record_model(name, version, self.alias, run_id, metrics)
        if decision.promote:
            # last: the alias is what serving follows, so it moves only once the decision is
            # recorded everywhere; if moving it fails, the store mirror is put back
            try:
                self.client.set_registered_model_alias(name, self.alias, version)
            except Exception:
                if self.store is not None and previous is not None:
                    self.store.record_model(name, previous.version, self.alias, previous.run_id, {})
                raise


__all__ = ["DEFAULT_ALIAS", "ChampionRef", "Decision", "ModelRegistry", "decide"]
