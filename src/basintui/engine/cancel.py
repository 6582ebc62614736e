"""A cancel token the engine polls (at least once a second of work)."""

from __future__ import annotations

import threading

from .errors import Cancelled


class CancelToken:
    """Thread-safe flag. `check()` raises Cancelled once `cancel()` has been called."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


class WorkerToken(CancelToken):
    """A token that also reads a foreign flag (e.g. a Textual worker's `is_cancelled`)."""

    def __init__(self, is_cancelled) -> None:  # is_cancelled: Callable[[], bool]
        super().__init__()
        self._foreign = is_cancelled

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self._foreign():
            self._event.set()
        return self._event.is_set()

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled("cancelled")
