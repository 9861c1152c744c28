"""SignalStack: a real-time ML pipeline for US equity market data."""

__version__ = "0.1.0"
