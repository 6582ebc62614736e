"""A run's clock: seconds elapsed and an estimate of the seconds left, from the engine's events.

The estimate is the running stage's own (its latest StageProgress `eta`, less the time since it
came; for training, the measured time a step) plus the planner's estimate of each stage not yet
started (`Plan.stage_seconds`). A stage the plan has no estimate for makes the total a lower bound
(`Remaining.complete` False), which the views show as "≥". Torch-free and clock-injectable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from ..schema.events import Stage, StageProgress, TrainProgress
    from ..schema.plan import Plan

STAGES = ("data", "train", "jacobian", "spectrum", "hessian", "layers", "levelset")


@dataclass(frozen=True)
class Remaining:
    seconds: float | None  # None: nothing can be said yet
    complete: bool  # False: some stage still to come has no estimate, so `seconds` is a lower bound

    def words(self) -> str:
        if self.seconds is None:
            return "unknown"
        return ("" if self.complete else "≥ ") + clock(self.seconds)


def clock(seconds: float) -> str:
    """1.2 s, 42 s, 4:05, 1:02:03; — when not finite."""
    if not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class RunClock:
    now: Callable[[], float] = time.monotonic
    started: float | None = None
    ended: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    planned: tuple[str, ...] = STAGES  # the stages this run will go through, in order
    current: str | None = None
    done: set[str] = field(default_factory=set)
    _eta: float | None = None  # the running stage's estimate of its seconds left, as of `_eta_at`
    _eta_at: float = 0.0

    def start(self, stages: tuple[str, ...] = STAGES) -> None:
        self.started, self.ended = self.now(), None
        self.planned, self.current, self._eta = stages, None, None
        self.done = set()
        self.stage_seconds = {}

    def stop(self) -> None:
        if self.started is not None and self.ended is None:
            self.ended = self.now()
        self.current, self._eta = None, None

    def plan(self, plan: Plan) -> None:
        self.stage_seconds = dict(getattr(plan, "stage_seconds", None) or {})

    def stage(self, e: Stage) -> None:
        if e.done:
            self.done.add(e.name)
            if self.current == e.name:
                self.current, self._eta = None, None
        else:
            self.current, self._eta = e.name, self.stage_seconds.get(e.name)
            self._eta_at = self.now()

    def progress(self, e: StageProgress) -> None:
        if e.name == self.current and e.eta is not None:
            self._eta, self._eta_at = e.eta, self.now()

    def train(self, e: TrainProgress) -> None:
        if self.current == "train" and e.step > 0 and e.elapsed > 0:
            self._eta = e.elapsed / e.step * max(e.total - e.step, 0)
            self._eta_at = self.now()

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else self.now()) - self.started

    def remaining(self) -> Remaining:
        if self.started is None or self.ended is not None:
            return Remaining(0.0 if self.ended is not None else None, True)
        total, complete = 0.0, True
        if self.current is not None:
            if self._eta is None:
                complete = False
            else:
                total += max(0.0, self._eta - (self.now() - self._eta_at))
        for name in self._to_come():
            if name in self.stage_seconds:
                total += self.stage_seconds[name]
            else:
                complete = False
        if not complete and total == 0.0:
            return Remaining(None, False)
        return Remaining(total, complete)

    def _to_come(self) -> list[str]:
        """The planned stages after the furthest one started or finished (one skipped on the way,
        such as jacobian on the matrix-free route, is not waited for)."""
        reached = [i for i, name in enumerate(self.planned) if name in self.done or name == self.current]
        start = max(reached) + 1 if reached else 0
        return [name for name in self.planned[start:] if name not in self.done]


def _amount(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.3g}"


def progress_text(stage: str | None, e: StageProgress | None, run_left: Remaining | None = None) -> Text:
    """'▶ jacobian 45% (450/1,000 columns)  elapsed 1.2 s  about 1.5 s left (measured)  ·  run: about
    12 s left'; the stage name alone until its first StageProgress; the run's part only when known."""
    t = Text("▶ ", style="bold")
    if e is None or e.name != stage:
        t.append(stage or "starting", style="bold")
    else:
        t.append(e.name, style="bold")
        if e.total > 0:
            t.append(f" {100 * min(max(e.done / e.total, 0.0), 1.0):.0f}%")
            if e.unit != "%":  # a stage counted in % of its arithmetic has no count to show
                t.append(f" ({_amount(e.done)}/{_amount(e.total)}{' ' + e.unit if e.unit else ''})", style="dim")
        t.append(f"  elapsed {clock(e.elapsed)}")
        if e.eta is not None and math.isfinite(e.eta):
            source = {"plan": "planned", "measured": "measured"}.get(e.eta_source, "")
            t.append(f"  about {clock(e.eta)} left" + (f" ({source})" if source else ""))
    if run_left is not None and run_left.seconds is not None:
        t.append(f"  ·  run: {'about ' if run_left.complete else ''}{run_left.words()} left", style="cyan")
    return t
