"""``python -m signalstack.ingest``: the ingest service without the full CLI (same exit codes)."""

from __future__ import annotations

import sys

from signalstack.config import get_settings
from signalstack.errors import SignalStackError
from signalstack.ingest.service import run
from signalstack.logs import configure_logging


def main() -> int:
    try:
        s = get_settings()
        configure_logging(s.log.level, s.log.format, secrets=s.secrets())
        run(s)
    except SignalStackError as err:
        print(f"signalstack ingest: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
