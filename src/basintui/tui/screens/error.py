"""The engine-error modal: the message (and the details on request); the app stays alive."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > Vertical { width: 90%; max-width: 100; height: auto; max-height: 90%; border: thick $error;
                             background: $surface; padding: 0 1; }
    ErrorScreen #error-message { height: auto; margin: 1 0; }
    ErrorScreen #error-details { height: auto; max-height: 12; display: none; color: $text-muted; }
    ErrorScreen #error-details.shown { display: block; }
    ErrorScreen Horizontal { height: auto; align-horizontal: right; }
    ErrorScreen Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape,enter", "close", "Close"), Binding("d", "details", "Details")]

    def __init__(self, title: str, message: str, details: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(Text(self.message), id="error-message")
            with VerticalScroll(id="error-details"):
                yield Static(Text(self.details))
            with Horizontal():
                if self.details:
                    yield Button("Details (d)", id="details")
                yield Button("Close (escape)", id="close", variant="error")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "details":
            self.action_details()
        else:
            self.action_close()

    def action_details(self) -> None:
        if self.details:
            self.query_one("#error-details").toggle_class("shown")

    def action_close(self) -> None:
        self.dismiss(None)
