"""The stage log's lines, one per engine event (the Training pane and the dashboard write the same)."""

from __future__ import annotations

from rich.text import Text

from ...schema.events import Note, Stage


def stage_line(m: Stage) -> Text:
    """'▶ hessian  dense, 2N HVPs' when a stage starts; '✓ hessian  41.20 s  detail' when it ends."""
    if not m.done:
        return Text(f"▶ {m.name}" + (f"  {m.detail}" if m.detail else ""))
    line = Text(f"✓ {m.name}", style="green")
    line.append(f"  {m.seconds:.2f} s", style="dim")
    if m.detail:
        line.append(f"  {m.detail}")
    return line


def note_line(m: Note) -> Text:
    style = "yellow" if m.level == "warn" else "dim"
    return Text(("⚠ " if m.level == "warn" else "• ") + m.text, style=style)
