"""The dashboard's summary strip: the answer a researcher opens the app for, in one or two lines.

preset, N, k·d, rank(G), the kernel dimension N − rank(G), the regime, Claim 3's verdict, the run's
status, elapsed and remaining time. Built from what is known so far: the plan before G exists, the
partial report while later stages run, the final report at the end. Torch-free, no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from .eta import Remaining, clock
from .hessian import VERDICT_STYLE
from .summary import REGIME_WORDS, rank_text

if TYPE_CHECKING:
    from ..schema import Report
    from ..schema.plan import Plan

REGIME_SHORT = {"over": "N > kd", "under": "N < kd", "square": "N = kd"}
STATUS_STYLE = {"running": "bold cyan", "converged": "bold green", "finished": "bold green",
                "max_steps": "bold green", "cancelled": "bold yellow", "failed": "bold red",
                "diverged": "bold red", "opened": "bold blue"}


@dataclass(frozen=True)
class StripState:
    preset: str
    status: str  # running, a training status word from the report, cancelled, failed, opened, ready
    plan: Plan | None = None
    report: Report | None = None
    elapsed: float | None = None
    remaining: Remaining | None = None
    stage: str | None = None  # the stage running now


def _sizes(s: StripState) -> tuple[str, str]:
    r, p = s.report, s.plan
    if r is not None and r.G is not None:
        return f"{r.G.n_params:,}", f"{r.G.n_outputs:,}"
    if p is not None and p.n_params is not None:
        return f"{p.n_params:,}", f"{p.kd:,}" if p.kd is not None else "?"
    return "?", "?"


def _rank_cells(s: StripState) -> list[tuple[str, Text]]:
    g = s.report.G if s.report is not None else None
    if g is None:
        pending = "…" if s.status == "running" else "not computed"
        return [("rank(G)", Text(pending, style="dim")), ("kernel", Text(pending, style="dim"))]
    rel = "=" if g.rank_exact is not False else "≤"
    return [("", Text(rank_text(g), style="bold green")),
            ("dim ker G", Text(f"{rel} {g.kernel_dim:,}", style="bold")),
            ("regime", Text(REGIME_SHORT.get(g.regime, g.regime), style="bold"))]


def claim3_text(s: StripState) -> Text:
    r = s.report
    h = r.hessian if r is not None else None
    if h is not None:
        v = h.claim3.verdict
        return Text(v.replace("_", " "), style=VERDICT_STYLE.get(v, "bold"))
    if r is not None and r.config.analysis.hessian == "off":
        return Text("off (analysis.hessian = off)", style="dim")
    if s.status == "running":
        return Text("…", style="dim")
    return Text("not computed", style="dim")


def _time_text(s: StripState) -> Text:
    t = Text()
    if s.elapsed is not None:
        t.append(clock(s.elapsed), style="bold")
    if s.status == "running" and s.remaining is not None:
        t.append(f" · {s.remaining.words()} left")
    return t


def strip_cells(s: StripState) -> list[tuple[str, Text]]:
    """(label, value) cells in reading order; an empty label means the value says what it is."""
    n, kd = _sizes(s)
    status = Text(s.status, style=STATUS_STYLE.get(s.status, "bold"))
    if s.status == "running" and s.stage:
        status.append(f" ({s.stage})", style="cyan")
    cells = [("preset", Text(s.preset, style="bold")), ("N", Text(n, style="bold")), ("k·d", Text(kd, style="bold"))]
    cells += _rank_cells(s)
    cells += [("Claim 3", claim3_text(s)), ("run", status)]
    time_text = _time_text(s)
    if time_text.plain:
        cells.append(("time", time_text))
    return cells


def strip_text(s: StripState) -> Text:
    out = Text(no_wrap=False)
    for i, (label, value) in enumerate(strip_cells(s)):
        if i:
            out.append(" │ ", style="dim")
        if label:
            out.append(f"{label} ", style="dim")
        out.append_text(value)
    return out


def regime_words(s: StripState) -> str:
    g = s.report.G if s.report is not None else None
    return "" if g is None else REGIME_WORDS.get(g.regime, g.regime)
