"""Errors raised by the market-data clients; all under :class:`SignalStackError`."""

from __future__ import annotations

from signalstack.errors import SignalStackError


class MarketDataError(SignalStackError):
    """Root of the market-data errors."""


class PolygonAuthError(MarketDataError):
    """The API key was refused (WebSocket ``auth_failed`` or REST 401/403). Fatal: retrying
    with the same key cannot help."""

    exit_code = 4


class PolygonMaxConnectionsError(MarketDataError):
    """The account's WebSocket connection limit was hit (``max_connections``)."""


class PolygonProtocolError(MarketDataError):
    """The server said something the protocol does not allow (e.g. no ``connected`` status)."""


class PolygonRestError(MarketDataError):
    """A REST call failed after its retries; ``status`` is the last HTTP status (0: transport)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class HistoryLimitError(MarketDataError):
    """A yfinance request asks for more history than Yahoo serves at that interval."""

    exit_code = 2
