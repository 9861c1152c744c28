"""``python -m signalstack.sink``: the sink service without the full CLI (SINK_* settings)."""

import sys

from signalstack.cli import service_main
from signalstack.sink.service import run

sys.exit(service_main("sink", run))
