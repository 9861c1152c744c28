"""``python -m signalstack.sink``: run the sink from the environment (SINK_MAX_BATCH,
SINK_HTTP_PORT and SINK_GROUP_ID tune it; the rest is the usual configuration)."""

from __future__ import annotations

import os

from signalstack.config import load_settings
from signalstack.logs import configure_logging
from signalstack.sink.service import SinkConfig, run


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log.level, settings.log.format, secrets=settings.secrets())
    port = os.environ.get("SINK_HTTP_PORT", "9108")
    config = SinkConfig(
        group_id=os.environ.get("SINK_GROUP_ID", "signalstack-sink"),
        max_batch=int(os.environ.get("SINK_MAX_BATCH", "5000")),
        http_port=int(port) if port else None,
    )
    run(settings, config=config)


if __name__ == "__main__":
    main()
