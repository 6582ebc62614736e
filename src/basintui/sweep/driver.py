"""The loop every backend shares: keep the backend's slots full, retry a crash or a timeout once, write
each finished run to the journal as it arrives, and on a cancel record the runs in flight as cancelled.

A backend has `capacity()` (how many runs it takes at once), `submit(task)`, `wait(seconds)` (the
(task, result) pairs finished since, a dead worker's run as a `retry` result) and `cancel()` (stop the
runs in flight: the (task, result) pairs that still came back, and the tasks that did not). Torch-free.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..schema.sweep import RunRow
from .journal import Journal
from .task import Task

MAX_ATTEMPTS = 2  # a crash or a timeout is retried once
ROW_FIELDS = set(RunRow.__struct_fields__)


class Backend(Protocol):
    def capacity(self) -> int: ...
    def submit(self, task: Task) -> None: ...
    def wait(self, seconds: float) -> list[tuple[Task, dict[str, Any]]]: ...
    def cancel(self) -> tuple[list[tuple[Task, dict[str, Any]]], list[Task]]: ...


@dataclass
class Outcome:
    rows: list[RunRow]
    cancelled: bool


def make_row(task: Task, result: dict[str, Any], attempts: int) -> RunRow:
    outcome = result.get("outcome")
    status = "ok" if outcome == "ok" else "cancelled" if outcome == "cancelled" else "failed"
    fields = {k: v for k, v in result.items() if k in ROW_FIELDS}
    fields.update(point=task.point, seed=task.seed, status=status, attempts=attempts)
    return RunRow(**fields)


def drive(tasks: list[Task], backend: Backend, journal: Journal, stop: threading.Event,
          on_row: Callable[[RunRow], None] = lambda r: None, poll_s: float = 0.1) -> Outcome:
    """Run `tasks` on `backend` until all have a row or `stop` is set."""
    pending: deque[tuple[Task, int]] = deque((t, 1) for t in tasks)
    attempt: dict[int, int] = {}
    inflight: dict[int, Task] = {}
    rows: list[RunRow] = []

    def record(task: Task, result: dict[str, Any], n: int) -> None:
        row = make_row(task, result, n)
        journal.append(row)
        rows.append(row)
        on_row(row)

    while (pending or inflight) and not stop.is_set():
        while pending and len(inflight) < max(backend.capacity(), 1):
            task, n = pending.popleft()
            inflight[id(task)], attempt[id(task)] = task, n
            backend.submit(task)
        for task, result in backend.wait(poll_s):
            inflight.pop(id(task), None)
            n = attempt.pop(id(task))
            if result.get("outcome") == "retry" and n < MAX_ATTEMPTS:
                pending.appendleft((task, n + 1))
                continue
            record(task, result, n)
    if stop.is_set() and inflight:
        came_back, lost = backend.cancel()
        for task, result in came_back:
            if id(task) in inflight:
                inflight.pop(id(task))
                if result.get("outcome") in ("ok", "fail"):  # finished before the cancel reached it
                    record(task, result, attempt[id(task)])
                else:
                    record(task, {**result, "outcome": "cancelled", "error": "cancelled"}, attempt[id(task)])
        for task in lost:
            if id(task) in inflight:
                inflight.pop(id(task))
                record(task, {"outcome": "cancelled", "error": "cancelled"}, attempt[id(task)])
    return Outcome(rows, stop.is_set())
