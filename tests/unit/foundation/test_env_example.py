""".env.example documents exactly the variables the settings read."""

from __future__ import annotations

from pathlib import Path

from signalstack.config import GROUPS


def test_env_example_matches_settings() -> None:
    example = Path(__file__).resolve().parents[3] / ".env.example"
    documented = {
        line.split("=", 1)[0].strip()
        for line in example.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    expected = {
        f"{group.model_config['env_prefix']}{name.upper()}"
        for group in GROUPS.values()
        for name in group.model_fields
    }
    assert documented == expected
