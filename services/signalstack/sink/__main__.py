"""``python -m signalstack.sink``: the sink service without the full CLI (SINK_* settings)."""

from __future__ import annotations

import sys

from signalstack.config import load_settings
from signalstack.errors import SignalStackError
from signalstack.logs import configure_logging
from signalstack.sink.service import run


def main() -> int:
    try:
        settings = load_settings()
        configure_logging(settings.log.level, settings.log.format, secrets=settings.secrets())
        run(settings)
    except SignalStackError as err:
        print(f"signalstack sink: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
