"""The lifecycle the serving's background loops share (the model repository's polling, the live
predictor, the WebSocket fan-out): one daemon thread running :meth:`Background._run` until
:meth:`Background._halt` sets the stop event; ``start`` is idempotent."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class Background(ABC):
    #: the thread's name (seen in stack dumps and profilers)
    thread_name: str = "background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _run(self) -> None:
        """The loop; it returns once ``self._stop`` is set."""

    def _started(self) -> None:  # noqa: B027 - an optional hook
        """Called once the thread runs (a log line, say)."""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        self._started()

    def _halt(self, timeout_s: float) -> bool:
        """Set the stop event and wait up to ``timeout_s`` for the thread: True when it ended
        (or never ran), False when it is still inside its loop."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()
