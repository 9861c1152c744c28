"""Periodic actions on an injected clock, independent of the machine's uptime.

``time.monotonic()`` counts from boot (on Linux): a "last done at" that starts at ``0.0`` makes
the first action wait until the machine has been up for one interval, so on a node booted
minutes earlier nothing happened (issue 11: no offset was committed). An :class:`Every` starts
from the clock's own reading instead: its first action is due at once, the next ones one
interval after the previous.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class Every:
    """An action due at once, then at most every ``interval`` seconds of ``clock``."""

    __slots__ = ("_next", "interval")

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._next = clock()

    def due(self, now: float) -> bool:
        return now >= self._next

    def done(self, now: float) -> None:
        """The action ran at ``now``: the next one is due an interval later."""
        self._next = now + self.interval
