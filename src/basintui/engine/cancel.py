"""A cancel token the engine polls (at least once a second of work).

The token remembers which stage was running when the cancel was asked for: the session sets
`token.stage` as each stage starts, and `cancelled_stage` keeps the value seen at the first cancel,
so a report can say where the run stopped (`training.cancelled_stage`). It also carries the run's
progress meter (`meter`, engine/progress.py), since every work loop already holds the token.
"""

from __future__ import annotations

import threading

from .errors import Cancelled


class CancelToken:
    """Thread-safe flag. `check()` raises Cancelled once `cancel()` has been called."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.stage: str | None = None  # the stage running now (set by the session)
        self.cancelled_stage: str | None = None  # the stage that was running at the first cancel
        self.meter = None  # the run's progress.Meter (set by the session; progress.of(token) reads it)

    def _mark(self) -> None:
        with self._lock:
            if not self._event.is_set():
                self.cancelled_stage = self.stage
                self._event.set()

    def cancel(self) -> None:
        self._mark()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled("cancelled")


class WorkerToken(CancelToken):
    """A token that also reads a foreign flag (e.g. a Textual worker's `is_cancelled`)."""

    def __init__(self, is_cancelled) -> None:  # is_cancelled: Callable[[], bool]
        super().__init__()
        self._foreign = is_cancelled

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self._foreign():
            self._mark()
        return self._event.is_set()


def run_cancellable(fn, cancel: CancelToken | None = None, poll_s: float = 0.1):
    """fn() in a helper thread while this one polls the token, for one long call that cannot look at it
    (LAPACK, a big matmul): on cancel the caller gets Cancelled within `poll_s`, and the helper's result
    is dropped when it finishes. Without a token, fn() runs here."""
    if cancel is None:
        return fn()
    cancel.check()
    box: dict = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=work, name="basintui-lapack", daemon=True)
    t.start()
    while t.is_alive():
        t.join(poll_s)
        cancel.check()
    if "error" in box:
        raise box["error"]
    return box["value"]
