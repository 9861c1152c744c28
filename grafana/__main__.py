"""``python -m grafana`` (``make dashboards``): write the generated dashboards."""

from __future__ import annotations

import sys
from pathlib import Path

from grafana.dashboards import rendered

OUT = Path(__file__).resolve().parents[1] / "charts/signalstack/charts/monitoring/files/dashboards"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    files = rendered()
    for stale in OUT.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
