"""The level-set view: is the rank locally constant around θ, and the tangent dimension the retraction
walk estimates, beside the kernel bound N − r and the generic N − kd (DESIGN §4)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ...render.summary import why_missing
from .plotting import num


def _verdict(v: Any) -> Text:
    if isinstance(v, dict):
        flag = v.get("holds", v.get("value", v.get("constant")))
        rest = ", ".join(f"{k} {num(x)}" for k, x in v.items() if not isinstance(x, (list, dict))
                         and k not in ("holds", "value", "constant"))
        base = _verdict(flag) if isinstance(flag, bool) else Text(num(flag))
        return base + Text(f"  ({rest})" if rest else "", style="dim")
    if isinstance(v, bool):
        return Text("yes" if v else "no: the rank changes near θ, so N − r need not be the level set's dimension",
                    style="green" if v else "yellow")
    return Text(num(v))


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
        head.append(f"estimated dim = {num(ls.get('estimated_dim'))}", style="bold")
        head.append(f"   kernel dim N − r = {num(ls.get('kernel_dim', g.get('kernel_dim')))}")
        head.append(f"   generic N − kd = {num(g.get('generic_dim'))}")
        self.query_one("#ls-head", Static).update(head)
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        t.add_row("rank locally constant?", _verdict(ls.get("locally_constant_rank")))
        rest = {k: v for k, v in ls.items() if k not in ("locally_constant_rank", "estimated_dim", "kernel_dim")}
        parts: list[Any] = [t]
        if rest:
            parts += [Text(""), _table(rest)]
        self.query_one("#ls-text", Static).update(Group(*parts))
