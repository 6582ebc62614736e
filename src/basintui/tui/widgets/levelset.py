"""The level-set view (DESIGN §4, issue 12): the dimension of the level set near θ, whether it is a
manifold there (yes / no / cannot tell, with the reason), the per-radius table, and a warning when the
answer depends on the probe radius; beside them the kernel bound N − r, the generic N − kd and the rest
of the probe's report."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ...render.levelset import by_radius_table, dimension_text, facts_table, manifold_text, radius_warning
from ...render.summary import why_missing
from .plotting import num


def _table(d: dict[str, Any]) -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for k, v in d.items():
        if isinstance(v, dict):
            t.add_row(k.replace("_", " "), _table(v))
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            t.add_row(k.replace("_", " "), f"{len(v)} entries (in the exported report)")
        elif isinstance(v, list):
            shown = ", ".join(num(x, 3) for x in v[:12]) + (" …" if len(v) > 12 else "")
            t.add_row(k.replace("_", " "), f"[{shown}] ({len(v)} values)")
        else:
            t.add_row(k.replace("_", " "), num(v))
    return t


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

    def show(self, report: dict[str, Any]) -> None:
        ls = report.get("levelset")
        if not ls:
            asked = report.get("config", {}).get("analysis", {}).get("levelset", False)
            off = "The level-set check is off for this run (set analysis.levelset = true in Setup)."
            why = why_missing(report, "levelset", "The level-set check", None if asked else off, "level-set")
            self.clear(why)
            return
        g = report.get("G") or {}
        head = Text()
        if ls.get("radius_dependent"):
            head.append("dimension and manifold: ", style="bold")
            head.append("depend on the probe radius", style="bold yellow")
        else:
            head.append("dimension = ", style="bold")
            head.append_text(dimension_text(ls))
            head.append("   manifold: ", style="bold")
            head.append_text(manifold_text(ls))
        head.append(f"   kernel dim N − r = {num(ls.get('kernel_dim', g.get('kernel_dim')))}")
        head.append(f"   generic N − kd = {num(ls.get('generic_dim', g.get('generic_dim')))}")
        warn = radius_warning(ls)
        if warn is not None:
            head = Text.assemble(head, "\n", warn)
        elif ls.get("manifold_why"):
            head = Text.assemble(head, "\n", Text(str(ls["manifold_why"]), style="italic"))
        self.query_one("#ls-head", Static).update(head)
        parts: list[Any] = [facts_table(ls, title=None)]
        table = by_radius_table(ls)
        if table is not None:
            parts += [Text(""), table]
        if ls.get("meaning"):
            parts += [Text(""), Text("\n".join(ls["meaning"]), style="italic")]
        shown = {"locally_constant_rank", "rank_at_theta", "rank_probes", "estimated_dim", "estimated_dim_method",
                 "manifold", "manifold_why", "radius_dependent", "by_radius", "kernel_dim", "generic_dim", "walk",
                 "claim1", "meaning"}
        rest = {k: v for k, v in ls.items() if k not in shown}
        if rest:
            parts += [Text(""), _table(rest)]
        self.query_one("#ls-text", Static).update(Group(*parts))
