"""Remember trade identities for a while (event time) to drop duplicates."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator


class DedupWindow:
    """Two generations of identity sets rotated on the event-time watermark.

    An identity is remembered for at least ``horizon_ns`` (and at most twice that) of event time
    after the newest trade seen. The hot path tests ``current``/``previous`` directly and calls
    :meth:`advance` once per frame.

    A gap fill runs inside :meth:`filling`: it fetches one symbol after another, each from its
    own start up to now, so the first symbol's trades move event time on by the whole gap while
    the later symbols' trades still overlap what was seen before the fill (the stream before the
    disconnect, or the topic's tail after a restart). What the window held when the fill began is
    therefore kept until the fill ends; the fill's own identities rotate as usual and those older
    than the window reaches are not kept, so memory stays bounded (the generations held at the
    start, and about what the window holds in steady state).
    """

    def __init__(self, horizon_ns: int) -> None:
        if horizon_ns <= 0:
            raise ValueError("horizon must be positive")
        self.horizon_ns = horizon_ns
        self.current: set[Hashable] = set()
        self.previous: set[Hashable] = set()
        self.generation_start: int | None = None
        self.pinned: tuple[set[Hashable], ...] = ()  # kept while a fill runs

    def known(self, identity: Hashable) -> bool:
        """True if ``identity`` is remembered (nothing changes)."""
        if identity in self.current or identity in self.previous:
            return True
        return any(identity in s for s in self.pinned)

    def seen(self, identity: Hashable, ts_ns: int) -> bool:
        """True if ``identity`` was seen before; otherwise remember it and return False.

        An identity already older than the window reaches (a horizon before the current
        generation began) is not remembered: the window would not keep it anyway, and a fill's
        later symbols, which start back in the past, do not grow the current generation."""
        if self.known(identity):
            return True
        gs = self.generation_start
        if gs is None or ts_ns >= gs - self.horizon_ns:
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

    @contextlib.contextmanager
    def filling(self) -> Iterator[None]:
        """Keep what the window holds now until the block ends (a gap fill; see the class)."""
        outer = self.pinned
        self.pinned = (*outer, self.current, self.previous)
        try:
            yield
        finally:
            self.pinned = outer

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)
