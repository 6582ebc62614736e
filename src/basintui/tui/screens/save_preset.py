"""Save the Setup pane's fields as a preset TOML file: ask for the path, confirm an overwrite, write it.

The file is written here (atomically, by presetio.write_preset_file) so that a bad path is reported in
the dialog, in words, and can be corrected; the screen returns what it wrote, or None when cancelled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ...config import Preset
from ...presetio import SaveError, for_folder, preset_to_toml, write_preset_file


@dataclass(frozen=True)
class SavedPreset:
    """What the dialog wrote: the path and the notes on what could not be carried over."""

    path: Path
    notes: tuple[str, ...]


class SavePresetScreen(ModalScreen[SavedPreset | None]):
    DEFAULT_CSS = """
    SavePresetScreen { align: center middle; }
    SavePresetScreen > Vertical { width: 90%; max-width: 90; height: auto; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    SavePresetScreen Horizontal { height: auto; align-horizontal: right; }
    SavePresetScreen Button { margin-left: 1; }
    SavePresetScreen #save-msg { color: $error; height: auto; }
    SavePresetScreen #save-msg.confirm { color: $warning; }
    """
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, preset: Preset, default_path: str) -> None:
        super().__init__()
        self.preset = preset
        self.default_path = default_path
        self.confirmed_path: Path | None = None  # the existing file the user agreed to replace

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Save as preset"
            yield Label(f"Write preset {self.preset.name!r} as a TOML file (`basintui run FILE` runs it):")
            yield Input(self.default_path, id="save-path")
            yield Static("", id="save-msg")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Save (enter)", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed, "#save-path")
    def _path_changed(self) -> None:
        if self.confirmed_path is not None:
            self.confirmed_path = None
            self._say("")
            self.query_one("#ok", Button).label = "Save (enter)"

    def _say(self, text: str, *, confirm: bool = False) -> None:
        msg = self.query_one("#save-msg", Static)
        msg.update(text)
        msg.set_class(confirm, "confirm")

    @on(Input.Submitted, "#save-path")
    @on(Button.Pressed, "#ok")
    def _confirm(self) -> None:
        text = self.query_one(Input).value.strip()
        if not text:
            self._say("✗ a path is needed, e.g. ./my-preset.toml")
            return
        target = Path(os.path.expanduser(text))
        overwrite = self.confirmed_path == target
        if not overwrite and target.is_file():
            self.confirmed_path = target
            self.query_one("#ok", Button).label = "Overwrite"
            self._say(f"{target} exists: press enter (or Overwrite) again to replace it", confirm=True)
            return
        self._write(target, overwrite)

    def _write(self, target: Path, overwrite: bool) -> None:
        try:
            preset, notes = for_folder(self.preset, target.parent)
            written = write_preset_file(target, preset_to_toml(preset), overwrite=overwrite)
        except SaveError as exc:
            self._say(f"✗ not saved: {exc}")
            self.confirmed_path = None
            self.query_one("#ok", Button).label = "Save (enter)"
            return
        except ValueError as exc:  # a value TOML cannot hold (a lone surrogate in a string)
            self._say(f"✗ not saved: {exc}")
            return
        self.dismiss(SavedPreset(written, tuple(notes)))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
