"""The level-set view (DESIGN §4, issue 12): the dimension of the level set near θ, whether it is a
manifold there (yes / no / cannot tell, with the reason), the per-radius table, and a warning when the
answer depends on the probe radius; beside them the kernel bound N − r, the generic N − kd and the rest
of the probe's report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ...render.levelset import by_radius_table, dimension_text, facts_table, manifold_text, radius_warning
from ...render.summary import why_missing
from .plotting import num

if TYPE_CHECKING:
    from ...schema import LevelSet, Report
    from ...schema._levelset import LevelSetRules


def _grid() -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    return t


def rules_table(r: LevelSetRules) -> Table:
    """The probe's thresholds, one row each, and the manifold rule in words."""
    t = _grid()
    for key, value in (("same sin", r.same_sin), ("differ sin", r.differ_sin), ("pca threshold", r.pca_threshold),
                       ("return frac", r.return_frac), ("local frac", r.local_frac), ("ker rtol", r.ker_rtol),
                       ("xtol", r.xtol), ("res rtol", r.res_rtol), ("floor ulps", r.floor_ulps),
                       ("manifold", r.manifold)):
        t.add_row(key, num(value))
    return t


def sizes_table(ls: LevelSet) -> Table:
    """N and kd of the probe, and its rules."""
    t = _grid()
    t.add_row("n params", num(ls.n_params))
    t.add_row("n outputs", num(ls.n_outputs))
    t.add_row("rules", rules_table(ls.rules))
    return t


def headline(ls: LevelSet) -> Text:
    """Dimension and manifold verdict (or that they depend on the radius), N − r and N − kd, and the reason."""
    head = Text()
    if ls.radius_dependent:
        head.append("dimension and manifold: ", style="bold")
        head.append("depend on the probe radius", style="bold yellow")
    else:
        head.append("dimension = ", style="bold")
        head.append_text(dimension_text(ls))
        head.append("   manifold: ", style="bold")
        head.append_text(manifold_text(ls))
    head.append(f"   kernel dim N − r = {num(ls.kernel_dim)}")
    head.append(f"   generic N − kd = {num(ls.generic_dim)}")
    warn = radius_warning(ls)
    if warn is not None:
        return Text.assemble(head, "\n", warn)
    if ls.manifold_why:
        return Text.assemble(head, "\n", Text(ls.manifold_why, style="italic"))
    return head


class LevelSetPane(Vertical):
    """Border title "Level set"."""

    DEFAULT_CSS = """
    LevelSetPane #ls-head { height: auto; padding: 0 1; }
    LevelSetPane #ls-body { height: 1fr; padding: 0 1; }
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Level set"

    def compose(self) -> ComposeResult:
        yield Static("No run yet: run a preset (r).", id="ls-head")
        with VerticalScroll(id="ls-body"):
            yield Static("", id="ls-text")

    def clear(self, why: str) -> None:
        self.query_one("#ls-head", Static).update(why)
        self.query_one("#ls-text", Static).update("")

    def show(self, report: Report) -> None:
        ls = report.levelset
        if ls is None:
            off = "The level-set check is off for this run (set analysis.levelset = true in Setup)."
            asked = report.config.analysis.levelset
            self.clear(why_missing(report, "levelset", "The level-set check", None if asked else off, "level-set"))
            return
        self.show_levelset(ls)

    def show_levelset(self, ls: LevelSet) -> None:
        """The level-set section itself (show() also says why a report has none)."""
        self.query_one("#ls-head", Static).update(headline(ls))
        parts: list[Any] = [facts_table(ls, title=None)]
        table = by_radius_table(ls)
        if table is not None:
            parts += [Text(""), table]
        if ls.meaning:
            parts += [Text(""), Text("\n".join(ls.meaning), style="italic")]
        parts += [Text(""), sizes_table(ls)]
        self.query_one("#ls-text", Static).update(Group(*parts))
