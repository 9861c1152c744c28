"""SparkApplication entry point for the stream job: settings from the environment, then the
job in signalstack.engines.spark (no feature math here)."""

from __future__ import annotations

from signalstack.config import load_settings
from signalstack.engines.run import run_spark
from signalstack.logs import configure_logging


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log.level, settings.log.format, secrets=settings.secrets())
    run_spark(settings)


if __name__ == "__main__":
    main()
