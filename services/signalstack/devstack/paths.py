"""Where `make setup` put things."""

from __future__ import annotations

import os
from pathlib import Path

from signalstack.errors import ComponentMissingError


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    """The project-local set-up cache (``.cache/``), overridable with SIGNALSTACK_CACHE_DIR."""
    env = os.environ.get("SIGNALSTACK_CACHE_DIR")
    return Path(env) if env else repo_root() / ".cache"


def require(path: Path, component: str) -> Path:
    """Fail loudly, with the command that fixes it, when a component is not installed."""
    if not path.exists():
        raise ComponentMissingError(
            f"{component} is not installed ({path} is missing): run `make setup`"
        )
    return path
