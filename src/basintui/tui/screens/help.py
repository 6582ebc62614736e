"""Help: every key, generated from the same table the app's bindings are built from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from ..app import KeySpec


def keys_table(keys: Sequence[KeySpec]) -> Table:
    """keys: the app's KeySpec table (key, action, description, help)."""
    t = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    t.add_column("key", no_wrap=True, style="bold cyan")
    t.add_column("does")
    for k in keys:
        t.add_row(k.display or k.key, k.help)
    return t


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close help")]

    def __init__(self, keys: Sequence[KeySpec]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "Help: keys (escape closes)"
            yield Static(keys_table(self.keys), id="help-keys")
            yield Static(Text(
                "\nIn the form, tab / shift+tab move between fields; in a table, the arrows move the cursor and "
                "enter selects. The mouse works too: click a tab, a field, a row or a button.\n"
                "ctrl+p opens the command palette: every action above, by name.", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
