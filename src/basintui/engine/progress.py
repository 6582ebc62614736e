"""How far the running stage has got: a Meter emits `StageProgress` snapshots (fraction done, seconds left).

One Meter per run. The session opens and closes each stage (`begin` / `end`) and hangs the meter on the
run's cancel token, which every work loop already holds, so a loop finds it with `of(cancel)` (a silent
meter when there is none). A loop says what its units are (`expect(total, unit)`) and how far it is
(`update(done)`), and, before one long call, how far that call will bring it (`update(done, upto=...)`).
A stage made of several loops gives each its share of the stage's units (`with meter.span(lo, hi):`):
inside, a loop's own `expect` / `update` are mapped onto [lo, hi] (spans nest), so a generic loop (the
Jacobian's chunks, a Gram's blocks) reports in its own units wherever it runs.

Snapshots go out at most every `min_interval` seconds from `update`, and at least every `heartbeat`
seconds from a helper thread (`running`), also while one long LAPACK / BLAS call holds the work
thread: the heartbeat moves `done` toward `upto` at the known rate, never past 95 % of the way and
never to the total before `end`. The seconds left come from the planner's estimate for the stage
(`Plan.stage_seconds`, eta_source "plan") until some units were measured, then from the measured
rate ("measured"); "none" when neither is known or the stage has outrun the plan's estimate before
any unit was done. `done` never goes down within a stage.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..schema.events import StageProgress

Clock = Callable[[], float]
REACH = 0.95  # the heartbeat's interpolation stops this far toward the point a long call will reach


@dataclass
class _Stage:
    name: str
    t0: float
    plan_s: float | None
    total: float = 1.0
    unit: str = ""
    done: float = 0.0  # measured
    upto: float = 0.0  # where the call running now will bring `done`
    t_done: float = 0.0  # when `done` was last raised
    t_work: float | None = None  # when the loops first reported (the measured rate starts here) …
    done_work: float = 0.0  # … and what was done then
    shown: float = 0.0  # the largest done reported
    spans: list[_Span] = field(default_factory=list)


@dataclass
class _Span:
    """A share [lo, hi] of the enclosing level's units, counted in `total` units of its own."""

    lo: float
    hi: float
    total: float = 1.0
    done: float = 0.0

    def map(self, x: float) -> float:
        return self.lo + (self.hi - self.lo) * min(max(x / self.total, 0.0), 1.0)


class Meter:
    """Stage progress for one run, safe to call from the work thread and the heartbeat thread."""

    def __init__(self, emit: Callable[[object], None], plan_seconds: dict[str, float] | None = None, *,
                 clock: Clock = time.monotonic, min_interval: float = 0.25, heartbeat: float = 0.5) -> None:
        self._emit = emit
        self.plan_seconds = dict(plan_seconds or {})
        self.clock = clock
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self._lock = threading.RLock()
        self._stage: _Stage | None = None
        self._last_emit = float("-inf")
        self._muted = 0

    # ------------------------------------------------------------------ the session's side

    def begin(self, name: str, total: float = 1.0, unit: str = "") -> None:
        """Stage `name` starts (`total` units until its loops say more); emits its first snapshot."""
        with self._lock:
            now = self.clock()
            self._stage = _Stage(name, now, self.plan_seconds.get(name), total=float(max(total, 1)), unit=unit,
                                 t_done=now)
            self._send(now)

    def end(self) -> None:
        """The running stage ended: a last snapshot with done = total (a cancelled or failed stage keeps
        its last one: `end` is for stages that finished)."""
        with self._lock:
            s, self._stage = self._stage, None
            if s is not None:
                now = self.clock()
                s.done = s.shown = s.total
                self._emit(self._event(s, now, s.total, 0.0, "measured"))
                self._last_emit = now

    def abandon(self) -> None:
        """The running stage stopped before its end (cancelled, failed): no more snapshots of it."""
        with self._lock:
            self._stage = None

    # ------------------------------------------------------------------ the work loops' side

    def expect(self, total: float, unit: str = "") -> None:
        """The work of the running stage (inside a span: of the span) is `total` units of `unit`."""
        with self._lock:
            s = self._active()
            if s is None or total <= 0:
                return
            if s.spans:
                s.spans[-1].total = float(total)
                return
            s.total, s.unit = float(total), unit
            s.done = min(s.done, s.total)
            s.shown = min(s.shown, s.total)

    def update(self, done: float, upto: float | None = None) -> None:
        """`done` units are done (the stage's, or the innermost span's); the call about to run will bring
        it to `upto` (default: done). Emits a snapshot unless one went out less than `min_interval` ago."""
        with self._lock:
            s = self._active()
            if s is None:
                return
            upto = done if upto is None else max(upto, done)
            if s.spans:
                s.spans[-1].done = max(s.spans[-1].done, float(done))
            for span in reversed(s.spans):
                done, upto = span.map(done), span.map(upto)
            now = self.clock()
            done = min(float(done), s.total)
            if s.t_work is None:
                s.t_work, s.done_work = now, s.done
            if done > s.done:
                s.done, s.t_done = done, now
            s.upto = min(max(float(upto), s.done), s.total)
            if now - self._last_emit >= self.min_interval:
                self._send(now)

    def advance(self, n: float = 1.0, upto: float | None = None) -> None:
        """`n` more units are done (see `update`)."""
        with self._lock:
            s = self._active()
            if s is not None:
                self.update((s.spans[-1].done if s.spans else s.done) + n, upto)

    @contextlib.contextmanager
    def span(self, lo: float, hi: float) -> Iterator[Meter]:
        """Units [lo, hi] of the enclosing level are the work of the block (which may `expect` its own);
        they are done when it exits normally, and the interpolation aims at hi meanwhile."""
        with self._lock:
            s = self._active()
            if s is not None:
                self.update(lo, upto=hi)
                s.spans.append(_Span(float(lo), float(hi)))
        try:
            yield self
        finally:
            with self._lock:
                if s is not None and self._stage is s:
                    s.spans.pop()
        with self._lock:
            if s is not None and self._stage is s:
                self.update(hi)

    @contextlib.contextmanager
    def step(self) -> Iterator[Meter]:
        """The block is the next unit of the enclosing level: a span of one unit after those done."""
        with self._lock:
            s = self._active()
            at = 0.0 if s is None else (s.spans[-1].done if s.spans else s.done)
        with self.span(at, at + 1):
            yield self

    @contextlib.contextmanager
    def muted(self) -> Iterator[Meter]:
        """The loops inside the block report nothing (work that is a step of a loop without a span of its
        own: a training step's rank probe, a generator's block); the heartbeat goes on."""
        with self._lock:
            self._muted += 1
        try:
            yield self
        finally:
            with self._lock:
                self._muted -= 1

    def _active(self) -> _Stage | None:
        return None if self._muted else self._stage

    def tick(self) -> None:
        """The heartbeat: a snapshot if none went out for `heartbeat` seconds."""
        with self._lock:
            now = self.clock()
            if self._stage is not None and now - self._last_emit >= self.heartbeat:
                self._send(now)

    @contextlib.contextmanager
    def running(self) -> Iterator[Meter]:
        """The heartbeat thread (ticks every heartbeat / 2 seconds) for the duration of the block; it stops
        early if the consumer raises from one of its snapshots."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat / 2):
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - the consumer raised: the work thread's next emit meets it too
                    return

        t = threading.Thread(target=beat, name="basintui-progress", daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join()

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> StageProgress | None:
        """The running stage's progress now (None between stages); emits nothing."""
        with self._lock:
            return None if self._stage is None else self._estimate(self._stage, self.clock())

    def _send(self, now: float) -> None:
        self._emit(self._estimate(self._stage, now))
        self._last_emit = now

    def _estimate(self, s: _Stage, now: float) -> StageProgress:
        """done (interpolated toward `upto` at the known rate, monotone) and the seconds left."""
        elapsed = now - s.t0
        rate, source = self._rate(s, elapsed)
        shown = s.done
        if s.upto > s.done and rate:
            shown = min(s.done + rate * (now - s.t_done), s.done + REACH * (s.upto - s.done))
        shown = min(max(shown, s.shown), s.total if s.done >= s.total else s.total * (1 - 1e-9))
        s.shown = shown
        if source == "measured":
            return self._event(s, now, shown, (s.total - shown) / rate, source)
        if source == "plan" and s.plan_s > elapsed:
            return self._event(s, now, shown, s.plan_s - elapsed, source)
        return self._event(s, now, shown, None, "none")  # no estimate, or the plan's ran out

    @staticmethod
    def _rate(s: _Stage, elapsed: float) -> tuple[float | None, str]:
        """Units a second: measured since the loops first reported once a unit is done since then, else
        the plan's total / plan seconds."""
        if s.t_work is not None and s.done > s.done_work and s.t_done > s.t_work:
            return (s.done - s.done_work) / (s.t_done - s.t_work), "measured"
        if s.plan_s:
            return s.total / s.plan_s, "plan"
        return None, "none"

    @staticmethod
    def _event(s: _Stage, now: float, done: float, eta: float | None, source: str) -> StageProgress:
        return StageProgress(s.name, done, s.total, s.unit, now - s.t0, eta, source)


class _Silent(Meter):
    """The meter of a token without one: takes every call, emits nothing."""

    def __init__(self) -> None:
        super().__init__(lambda e: None)

    def begin(self, name: str, total: float = 1.0, unit: str = "") -> None:
        pass


SILENT = _Silent()


def of(cancel) -> Meter:
    """The meter a cancel token carries (the session's), or a silent one."""
    meter = getattr(cancel, "meter", None)
    return meter if meter is not None else SILENT


def serialized(emit: Callable[[object], None]) -> Callable[[object], None]:
    """`emit` behind a lock: the run's events come from the work thread and the heartbeat thread."""
    lock = threading.Lock()

    def locked(event: object) -> None:
        with lock:
            emit(event)

    return locked
