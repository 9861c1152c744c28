"""Periodic actions do not depend on where the clock starts (time.monotonic() counts from
boot: a machine booted a few seconds ago reads a few seconds)."""

from __future__ import annotations

import pytest

from signalstack.sink.periodic import Every


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("start", [0.0, 5.0, 1e9])
def test_due_at_once_then_one_interval_after_each_run(start: float) -> None:
    clock = FakeClock(start)
    every = Every(30.0, clock)
    assert every.due(clock())
    every.done(clock())
    clock.now += 29.9
    assert not every.due(clock())
    clock.now += 0.1
    assert every.due(clock())
    every.done(clock())
    assert not every.due(clock())
