"""The WebSocket fan-out: subscribers, each with a bounded queue, on the event loop.
:meth:`Hub.publish` never waits: a subscriber whose queue is full (it stopped reading) is
dropped at once — its handler closes it with :data:`CLOSE_TOO_SLOW` — and the others go on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from signalstack.serving.metrics import ServingMetrics

#: the WebSocket close codes (RFC 6455 leaves 4000–4999 to applications)
CLOSE_BAD_SUBSCRIPTION: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SUBSCRIBE_TIMEOUT: Final = 4408
CLOSE_TOO_SLOW: Final = 4429


@dataclass(frozen=True)
class Subscription:
    symbols: frozenset[str] | None  # None: every symbol
    models: frozenset[str]

    def wants(self, symbol: str, model: str) -> bool:
        return model in self.models and (self.symbols is None or symbol in self.symbols)


class Subscriber:
    """One client: its subscription and bounded queue (made on the event loop)."""

    def __init__(self, subscription: Subscription, max_queue: int) -> None:
        self.subscription = subscription
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max_queue)
        self.dropped = asyncio.Event()


Message = tuple[str, str, bytes]  # symbol, model, JSON


class Hub:
    """The subscribers; :meth:`publish` runs on the event loop (never blocks)."""

    def __init__(self, metrics: ServingMetrics | None = None) -> None:
        self.metrics = metrics
        self._subscribers: set[Subscriber] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def add(self, s: Subscriber) -> None:
        self._subscribers.add(s)
        if self.metrics is not None:
            self.metrics.ws_clients.set(len(self._subscribers))

    def remove(self, s: Subscriber) -> None:
        self._subscribers.discard(s)
        if self.metrics is not None:
            self.metrics.ws_clients.set(len(self._subscribers))

    def publish(self, messages: Iterable[Message]) -> None:
        batch = list(messages)
        for s in list(self._subscribers):
            if s.dropped.is_set():
                continue
            for symbol, model, value in batch:
                if not s.subscription.wants(symbol, model):
                    continue
                try:
                    s.queue.put_nowait(value)
                except asyncio.QueueFull:  # it stopped reading: drop it, never wait for it
                    s.dropped.set()
                    self.remove(s)
                    if self.metrics is not None:
                        self.metrics.ws_dropped.inc()
                    break


__all__ = [
    "CLOSE_BAD_SUBSCRIPTION",
    "CLOSE_SUBSCRIBE_TIMEOUT",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "Hub",
    "Message",
    "Subscriber",
    "Subscription",
]
