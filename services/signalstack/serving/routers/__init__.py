"""The HTTP routes: Open Inference Protocol v2 (``v2``), ``/predict/*`` (``predict``), and
``/health`` + ``/metrics`` (``health``)."""
