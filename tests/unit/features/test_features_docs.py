"""docs/FEATURES.md states each definition exactly as the code does."""

from __future__ import annotations

from pathlib import Path

from signalstack.features.bar_features import BAR_DEFINITIONS
from signalstack.features.definitions import DEFINITIONS

DOC = Path(__file__).resolve().parents[3] / "docs" / "FEATURES.md"


def test_every_definition_appears_verbatim():
    text = DOC.read_text(encoding="utf-8")
    for name, definition in DEFINITIONS.items():
        assert f"| `{name}` | {definition} |" in text, name


def test_every_bar_only_definition_appears_verbatim():
    text = DOC.read_text(encoding="utf-8")
    for name, definition in BAR_DEFINITIONS.items():
        assert f"| `{name}` | {definition} |" in text, name
