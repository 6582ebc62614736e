"""The local backend: worker processes that each import torch once (one torch thread each) and run many
configurations. Each worker has its own pipe, so the parent knows which run each one holds: a worker that
dies costs only its run (a `retry` result; a fresh worker takes its place), and one that runs past
`timeout + HARD_GRACE_S` (its own timer cancels the run at `timeout`) is killed the same way.

Workers ignore SIGINT (Ctrl-C reaches the whole process group; the parent decides); SIGTERM cancels the
run a worker holds, which then comes back as `cancelled`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from multiprocessing.connection import wait as wait_any
from typing import Any, Self

from .task import Task

HARD_GRACE_S = 30.0  # past its own timeout, how long a run may take to stop before its worker is killed
CANCEL_WAIT_S = 3.0  # after a cancel, how long the parent waits for the runs in flight to come back


def usable_cores() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(os.cpu_count() or 1, 1)


def _worker_main(conn, quiet: bool = False) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet:  # under the app: nothing of a worker's may reach the terminal the app draws on
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    current: dict[str, Any] = {}

    def on_term(signum, frame) -> None:
        token = current.get("token")
        if token is not None:
            token.cancel()
        else:
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from ..engine.cancel import CancelToken
    from .task import run_task

    conn.send({"ready": os.getpid()})
    while True:
        try:
            task = conn.recv()
        except EOFError:
            break
        if task is None:
            break
        current["token"] = CancelToken()
        try:
            result = run_task(task, current["token"])
        finally:
            current["token"] = None
        conn.send(result)
    os._exit(0)  # skip torch's teardown


@contextmanager
def _real_stderr():
    """multiprocessing passes sys.stderr's descriptor to its helper processes; under the app (or any
    capture) sys.stderr has none, so the process's own stderr stands in while workers start."""
    try:
        ok = sys.stderr is not None and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        ok = False
    if ok:
        yield
        return
    saved = sys.stderr
    sys.stderr = sys.__stderr__
    try:
        yield
    finally:
        sys.stderr = saved


@contextmanager
def _no_sigint():
    """Start a worker with SIGINT ignored from its first instruction (the disposition survives exec, and
    Python keeps an ignored SIGINT): a Ctrl-C while it imports must not print a traceback; the parent
    decides what a Ctrl-C means. Only the main thread may change handlers (the app's runner is not)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Worker:
    def __init__(self, ctx, quiet: bool = False) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, quiet), daemon=True,
                                name="basintui-sweep-worker")
        with _real_stderr(), _no_sigint():
            self.proc.start()
        child.close()
        self.task: Task | None = None
        self.started = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class Pool:
    """`workers` processes (default: the usable cores), started lazily, replaced when one dies."""

    def __init__(self, workers: int | None = None, quiet: bool = False) -> None:
        self.n = workers or usable_cores()
        self.quiet = quiet
        self.ctx = mp.get_context("spawn")
        self.workers: list[_Worker] = []

    def __enter__(self) -> Self:
        self.workers = [_Worker(self.ctx, self.quiet) for _ in range(self.n)]
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            try:
                if w.proc.is_alive() and w.task is None:
                    w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            w.proc.join(max(deadline - time.monotonic(), 0))
            w.kill()
        self.workers = []

    def capacity(self) -> int:
        return self.n

    def submit(self, task: Task) -> None:
        w = next(w for w in self.workers if w.task is None)
        w.task, w.started = task, time.monotonic()
        try:
            w.conn.send(task)
        except (OSError, BrokenPipeError):
            pass  # a dead worker: wait() sees its sentinel and reports the run for a retry

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = _Worker(self.ctx, self.quiet)

    def _poll(self, seconds: float) -> list[tuple[Task, dict[str, Any]]]:
        busy = [w for w in self.workers if w.task is not None]
        if not busy:
            time.sleep(min(seconds, 0.05))
        ready = set(wait_any([x for w in self.workers for x in (w.conn, w.proc.sentinel)], seconds))
        out = []
        for w in list(self.workers):
            result = None
            if w.conn in ready:
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    msg = None
                if isinstance(msg, dict) and "ready" in msg:
                    continue
                result = msg
            if result is None and (w.proc.sentinel in ready or not w.proc.is_alive()):
                task = w.task
                code = w.proc.exitcode
                self._replace(w)
                if task is not None:
                    out.append((task, {"outcome": "retry", "error": f"the worker process died (exit code {code})"}))
                continue
            if result is not None and w.task is not None:
                out.append((w.task, result))
                w.task = None
        return out

    def _overdue(self) -> list[tuple[Task, dict[str, Any]]]:
        out = []
        now = time.monotonic()
        for w in list(self.workers):
            t = w.task
            if t is not None and t.timeout and now - w.started > t.timeout + HARD_GRACE_S:
                self._replace(w)
                out.append((t, {"outcome": "retry", "error": f"timed out after {t.timeout:g} s (the run did not "
                                                             f"stop; its worker was killed)"}))
        return out

    def wait(self, seconds: float) -> list[tuple[Task, dict[str, Any]]]:
        return self._poll(seconds) + self._overdue()

    def cancel(self) -> tuple[list[tuple[Task, dict[str, Any]]], list[Task]]:
        for w in self.workers:
            if w.task is not None and w.proc.is_alive():
                os.kill(w.proc.pid, signal.SIGTERM)
        came_back: list[tuple[Task, dict[str, Any]]] = []
        deadline = time.monotonic() + CANCEL_WAIT_S
        while any(w.task is not None for w in self.workers) and time.monotonic() < deadline:
            came_back += self._poll(0.05)
        lost = [w.task for w in self.workers if w.task is not None]
        for w in list(self.workers):
            if w.task is not None:
                w.task = None
                self._replace(w)
        return came_back, lost
