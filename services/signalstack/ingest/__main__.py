"""``python -m signalstack.ingest``: the ingest service without the full CLI (same exit codes)."""

import sys

from signalstack.cli import service_main
from signalstack.ingest.service import run

sys.exit(service_main("ingest", run))
