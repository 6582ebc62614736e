"""Export: confirm (or edit) the path; the report goes to PATH.json and PATH.npz."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ExportScreen(ModalScreen[str | None]):
    """Returns the confirmed base path (the .json / .npz pair is derived from it), or None."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 90%; max-width: 90; height: auto; border: thick $accent;
                              background: $surface; padding: 0 1; }
    ExportScreen Horizontal { height: auto; align-horizontal: right; }
    ExportScreen Button { margin-left: 1; }
    ExportScreen #export-msg { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel export")]

    def __init__(self, default_path: str) -> None:
        super().__init__()
        self.default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Export the report"
            yield Label("Write the report as JSON and NPZ to (PATH.json, PATH.npz):")
            yield Input(self.default_path, id="export-path")
            yield Static("", id="export-msg")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Export (enter)", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _confirm(self) -> None:
        path = self.query_one(Input).value.strip()
        if not path:
            self.query_one("#export-msg", Static).update("✗ a path is needed")
            return
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
