"""Remember trade identities for a while (event time) to drop duplicates."""

from __future__ import annotations

from collections.abc import Hashable


class DedupWindow:
    """Two generations of identity sets rotated on the event-time watermark.

    An identity is remembered for at least ``horizon_ns`` (and at most twice that) of event time
    after the newest trade seen. Gap fills run before the new stream moves the watermark, so
    everything they can overlap is still remembered. The hot path tests ``current``/``previous``
    directly and calls :meth:`advance` once per frame.
    """

    def __init__(self, horizon_ns: int) -> None:
        if horizon_ns <= 0:
            raise ValueError("horizon must be positive")
        self.horizon_ns = horizon_ns
        self.current: set[Hashable] = set()
        self.previous: set[Hashable] = set()
        self.generation_start: int | None = None

    def seen(self, identity: Hashable, ts_ns: int) -> bool:
        """True if ``identity`` was seen before; otherwise remember it and return False."""
        if identity in self.current or identity in self.previous:
            return True
        self.current.add(identity)
        self.advance(ts_ns)
        return False

    def advance(self, watermark_ns: int) -> None:
        """Rotate generations once event time moved ``horizon_ns`` past the current one."""
        gs = self.generation_start
        if gs is None:
            self.generation_start = watermark_ns
        elif watermark_ns - gs > self.horizon_ns:
            self.previous, self.current = self.current, set()
            self.generation_start = watermark_ns

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)
