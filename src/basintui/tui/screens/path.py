"""Ask for a file path: returns the path typed (stripped), or None when cancelled."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class PathScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    PathScreen { align: center middle; }
    PathScreen > Vertical { width: 90%; max-width: 90; height: auto; border: thick $accent;
                            background: $surface; padding: 0 1; }
    PathScreen Horizontal { height: auto; align-horizontal: right; }
    PathScreen Button { margin-left: 1; }
    PathScreen #path-msg { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, prompt: str, default: str = "") -> None:
        super().__init__()
        self.title_text, self.prompt, self.default = title, prompt, default

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Label(self.prompt)
            yield Input(self.default, id="path-input")
            yield Static("", id="path-msg")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("OK (enter)", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _confirm(self) -> None:
        path = self.query_one(Input).value.strip()
        if not path:
            self.query_one("#path-msg", Static).update("✗ a path is needed")
            return
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
