"""The Setup pane: pick a preset (built-in or a path), edit every key with inline validation, see the sizes.

Validation is config.from_dict, the same pass the CLI uses: the first error it finds is shown under
the field it names, and a form with an error cannot start a run.

What runs is what the fields show. Loading a preset (enter or a click in the list, a path in the path
field, or the preset the app starts on) fills the fields, and the list then highlights exactly that
preset (nothing, for a file that is not a built-in); the "Loaded:" line names it and says when the
fields were edited since. Moving the highlight with the arrows only previews a preset's description,
and the highlight returns to the loaded preset when the list loses focus. Under the sizes, the
equivalent `basintui run` command for the fields; `s` saves them as a preset file. Esc in a text
field leaves it (focus back to the preset list), keeping what was typed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from ...config import (
    ACTIVATIONS,
    CE_OUTPUTS,
    DATA_KINDS,
    DEVICES,
    DTYPES,
    HESSIAN_MODES,
    LAYOUTS,
    LOSSES,
    MODEL_KINDS,
    OPTIMIZERS,
    SECTIONS,
    SPECTRUM_ROUTES,
    TARGET_KINDS,
    TOP_LEVEL,
    Preset,
    PresetError,
    find_preset,
    from_dict,
    list_presets,
    load_preset,
    presets_dir,
    show,
)
from ...limits import fmt_bytes
from ...planner import plan_preset
from ...presetio import equivalent_command
from ...schema.plan import Plan
from ..screens.save_preset import SavedPreset, SavePresetScreen

ENUMS: dict[str, tuple[str, ...]] = {
    "device": DEVICES,
    "dtype": DTYPES,
    "data.kind": DATA_KINDS,
    "data.targets": TARGET_KINDS,
    "data.layout": LAYOUTS,
    "model.kind": MODEL_KINDS,
    "model.activation": ACTIVATIONS,
    "train.loss": LOSSES,
    "train.optimizer": OPTIMIZERS,
    "analysis.hessian": HESSIAN_MODES,
    "analysis.ce_output": CE_OUTPUTS,
    "analysis.route": SPECTRUM_ROUTES,
}
TEXT_KEYS = ("name", "description", "data.path", "model.factory", "model.checkpoint")  # taken verbatim, not as TOML
HINTS = {
    "data.n": "empty: 64 (or every row of a file)",
    "data.dim": "empty: the kind's own dimension",
    "data.rank": "empty: min(n, dim)",
    "model.hidden": "e.g. [16, 16]",
    "analysis.rtol": "0 = σ₁·max(N, kd)·ε",
    "analysis.rank_every": "0 = auto, -1 = never",
    "analysis.top_k": "σ's found by the matrix-free route",
    "train.steps": "0 = analyse the initial θ",
    "train.batch_size": "0 = full batch",
}


def field_keys() -> list[tuple[str, str]]:
    """(dotted key, declared type) for every preset key, in the order of the TOML file."""
    top = {f.name: f for f in dataclasses.fields(Preset)}
    keys = [(k, str(top[k].type)) for k in TOP_LEVEL]
    for sec, cls in SECTIONS.items():
        keys += [(f"{sec}.{f.name}", str(f.type)) for f in dataclasses.fields(cls)]
    return keys


def _toml_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _dig(d: dict[str, Any], key: str) -> Any:
    sec, _, sub = key.partition(".")
    return d[sec][sub] if sub else d[sec]


def _safe(key: str) -> str:
    return "f-" + key.replace(".", "-").replace("_", "-")


@dataclass
class SetupChanged(Message):
    """The form changed: the valid preset, or None with the first error."""

    preset: Preset | None
    error: str


class FieldRow(Vertical):
    """One preset key: a label, its editor and the inline validation message under it."""

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Horizontal { height: auto; }
    FieldRow .key { width: 22; padding: 0 1 0 0; }
    FieldRow Input, FieldRow Select { width: 1fr; }
    FieldRow .msg { color: $error; padding-left: 22; height: auto; display: none; }
    FieldRow .msg.shown { display: block; }
    FieldRow .hint { color: $text-muted; padding-left: 22; height: auto; }
    """

    def __init__(self, key: str, type_: str) -> None:
        super().__init__(id=_safe(key))
        self.key = key
        self.type_ = type_

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.key, classes="key")
            if self.key in ENUMS:
                yield Select([(v, v) for v in ENUMS[self.key]], allow_blank=False, id="editor", compact=True)
            elif self.type_ == "bool":
                yield Checkbox(self.key.split(".")[-1], id="editor", compact=True)
            else:
                yield Input(id="editor", placeholder=HINTS.get(self.key, ""), compact=True)
        if self.key in HINTS and self.key not in ENUMS:
            yield Static(HINTS[self.key], classes="hint")
        yield Static("", classes="msg")

    @property
    def editor(self) -> Widget:
        return self.query_one("#editor")

    def set_value(self, value: Any) -> None:
        ed = self.editor
        if isinstance(ed, Select):
            ed.value = value
        elif isinstance(ed, Checkbox):
            ed.value = bool(value)
        else:
            assert isinstance(ed, Input)
            ed.value = _toml_text(value)

    def raw_value(self) -> tuple[bool, Any]:
        """(present, value): absent means 'the default'. Raises ValueError on text that isn't TOML."""
        ed = self.editor
        if isinstance(ed, (Select, Checkbox)):
            return True, ed.value
        text = ed.value.strip() if self.key not in TEXT_KEYS else ed.value
        if self.key in TEXT_KEYS:
            return True, text
        if text == "":
            return False, None
        try:
            return True, tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raise ValueError(f"{text!r} is not a value (a number, true/false, or a list like [16, 16])") from None

    def show_error(self, text: str) -> None:
        msg = self.query_one(".msg", Static)
        msg.update(f"✗ {text}" if text else "")
        msg.set_class(bool(text), "shown")
        self.set_class(bool(text), "invalid")


class SetupPane(Vertical):
    """Border title "Setup"."""

    DEFAULT_CSS = """
    SetupPane #presets-col { width: 30; height: 1fr; }
    SetupPane #preset-loaded { height: auto; padding: 0 1; text-style: bold; }
    SetupPane #preset-list { height: 1fr; min-height: 4; }
    SetupPane #preset-desc { height: auto; max-height: 5; color: $text-muted; padding: 0 1; }
    SetupPane #path-msg { color: $error; height: auto; }
    SetupPane #form { width: 1fr; height: 1fr; }
    SetupPane .section { text-style: bold; color: $accent; padding-top: 1; }
    SetupPane #sizes { height: auto; padding: 0 1; }
    SetupPane #equiv-command { height: auto; padding: 0 1; color: $text-muted; }
    SetupPane #setup-status { height: auto; width: 1fr; padding: 0 1; }
    SetupPane #setup-status.error { color: $error; }
    SetupPane #setup-bar { height: auto; }
    SetupPane #setup-bar Button { margin-left: 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "leave_field", "Leave the field", show=False),
    ]

    def __init__(self, preset: Preset, **kw: Any) -> None:
        super().__init__(**kw)
        self.border_title = "Setup"
        self._loaded = preset
        self._source_dir = preset.source_dir
        self.current: Preset | None = preset
        self.error = ""
        self.measured: str = ""
        self.loaded_ref: str | None = None  # the built-in's name or the path the fields were loaded from
        self.loaded_builtin: str | None = None  # the list entry of the loaded preset (None: not a built-in)
        self._bases: dict[str, Preset] = {}  # base presets of the equivalent command, as loaded

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="presets-col"):
                yield Static("", id="preset-loaded")
                opts = OptionList(*[Option(n, id=n) for n, _ in list_presets()], id="preset-list")
                opts.border_title = "Built-in presets"
                yield opts
                yield Static("", id="preset-desc")
                yield Input(placeholder="or a .toml path + enter", id="preset-path", compact=True)
                yield Static("", id="path-msg")
            with VerticalScroll(id="form"):
                section: str | None = None
                for key, type_ in field_keys():
                    sec = key.split(".")[0] if "." in key else ""
                    if sec != section:
                        yield Label(f"[{sec}]" if sec else "top level", classes="section")
                        section = sec
                    yield FieldRow(key, type_.replace(" | None", ""))
        yield Static("", id="sizes")
        yield Static("", id="equiv-command")
        with Horizontal(id="setup-bar"):
            yield Static("", id="setup-status")
            yield Button("Save as preset… (s)", id="save-button", compact=True)
            yield Button("Run (r)", id="run-button", variant="primary", compact=True)

    def on_mount(self) -> None:
        self._descriptions = dict(list_presets())
        self.load(self._loaded)

    # ---- loading
    def load(self, preset: Preset, ref: str | None = None) -> None:
        """Fill the form from a preset (its values, resolved). `ref` is the name or path it was loaded
        from; None for the preset the app started on (then found from its folder and name, if it can be)."""
        self._loaded = preset
        self._source_dir = preset.source_dir
        self.loaded_ref, self.loaded_builtin = self._locate(preset, ref)
        if self.loaded_ref is not None:
            self._bases[self.loaded_ref] = preset
        values = preset.to_dict()
        with self.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            for row in self.query(FieldRow):
                row.set_value(_dig(values, row.key))
        self.restore_highlight()
        self.validate()

    def _locate(self, preset: Preset, ref: str | None) -> tuple[str | None, str | None]:
        """(the reference a command can load it by, its built-in name or None)."""
        if ref is None:  # the app's own preset: the file `<folder>/<name>.toml`, when that file holds it
            if not preset.source_dir:
                return None, None
            ref = str(Path(preset.source_dir) / f"{preset.name}.toml")
            try:
                if load_preset(ref).to_dict() != preset.to_dict():
                    return None, None
            except PresetError:
                return None, None
        try:
            path = find_preset(ref)
        except PresetError:
            return ref, None
        if path.stem in self._descriptions and _same_dir(path.parent, presets_dir()):
            return path.stem, path.stem
        return ref, None

    def restore_highlight(self) -> None:
        """The list highlights the loaded preset, or nothing when it is not a built-in."""
        opts = self.query_one("#preset-list", OptionList)
        try:
            index = None if self.loaded_builtin is None else opts.get_option_index(self.loaded_builtin)
        except OptionDoesNotExist:
            index = None
        opts.highlighted = index
        self.query_one("#preset-desc", Static).update(Text(self._loaded.description))

    @on(OptionList.OptionSelected, "#preset-list")
    def _pick(self, event: OptionList.OptionSelected) -> None:
        self._load_name(str(event.option.id))

    @on(OptionList.OptionHighlighted, "#preset-list")
    def _describe(self, event: OptionList.OptionHighlighted) -> None:
        name = str(event.option.id)
        desc = self.query_one("#preset-desc", Static)
        if name == self.loaded_builtin:
            desc.update(Text(self._loaded.description))
        else:
            desc.update(Text(f"Preview (enter loads it) of {name}: {self._descriptions.get(name, '')}"))

    @on(events.DescendantBlur)
    def _list_left(self, event: events.DescendantBlur) -> None:
        if event.widget.id == "preset-list":
            self.restore_highlight()

    @on(Input.Submitted, "#preset-path")
    def _path(self, event: Input.Submitted) -> None:
        self._load_name(event.value.strip())

    def _load_name(self, name: str) -> None:
        msg = self.query_one("#path-msg", Static)
        try:
            preset = load_preset(name)
        except PresetError as exc:
            msg.update(Text(f"✗ {exc}"))
            return
        msg.update("")
        self.load(preset, name)
        self.app.notify(f"Loaded preset {preset.name}", timeout=2)

    def _loaded_label(self) -> str:
        if self.loaded_builtin is not None:
            return f"built-in {self.loaded_builtin}"
        if self.loaded_ref is not None:
            return self.loaded_ref
        return f"{self._loaded.name} (not from a preset file)"

    def _show_loaded(self, preset: Preset | None) -> None:
        edited = preset is None or preset.to_dict() != self._loaded.to_dict()
        self.query_one("#preset-loaded", Static).update(
            Text(f"Loaded: {self._loaded_label()}" + (" · edited" if edited else "")))

    # ---- validation
    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Message) -> None:
        if getattr(event, "input", None) is not None and event.input.id == "preset-path":
            return
        self.validate()

    def _collect(self, rows: list[FieldRow]) -> tuple[dict[str, Any], dict[str, str]]:
        """The fields as raw preset data, and {key: message} for text that is not a value."""
        raw: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for row in rows:
            try:
                present, value = row.raw_value()
            except ValueError as exc:
                errors[row.key] = str(exc)
                continue
            if not present:
                continue
            sec, _, sub = row.key.partition(".")
            if sub:
                raw.setdefault(sec, {})[sub] = value
            else:
                raw[sec] = value
        return raw, errors

    def validate(self) -> Preset | None:
        rows = list(self.query(FieldRow))
        raw, errors = self._collect(rows)
        preset, first = None, ""
        if errors:
            key = next(iter(errors))
            first = f"{key}: {errors[key]}"
        else:
            try:
                preset = from_dict(raw, source_dir=self._source_dir)
            except PresetError as exc:
                errors[exc.key] = f"{show(exc.value)} is not allowed: {exc.allowed}"
                first = str(exc)
        for row in rows:
            row.show_error(errors.get(row.key, ""))
        self.current = preset
        self.error = first
        status = self.query_one("#setup-status", Static)
        if preset is None:
            status.update(Text(f"✗ {first}"))
            status.add_class("error")
        else:
            status.update(Text(f"✓ preset {preset.name!r} is valid: press r to run it"))
            status.remove_class("error")
        self._show_sizes(preset)
        self._show_loaded(preset)
        self._show_command(preset, next(iter(errors), ""))
        self.post_message(SetupChanged(preset, first))
        return preset

    # ---- the equivalent command line
    def _command_base(self) -> tuple[str, Preset | None]:
        """The preset the command starts from: the loaded one, else the built-in default."""
        name = self.loaded_ref if self.loaded_ref is not None else "default"
        if name not in self._bases:
            try:
                self._bases[name] = load_preset(name)
            except PresetError:
                return name, None
        return name, self._bases[name]

    def _show_command(self, preset: Preset | None, bad_key: str) -> None:
        line = self.query_one("#equiv-command", Static)
        if preset is None:
            line.update(Text(f"Equivalent command: none while field {bad_key or '?'} is invalid"))
            return
        name, base = self._command_base()
        if base is None:
            line.update(Text(f"Equivalent command: none ({name} cannot be read any more); save as a preset (s)"))
            return
        try:
            command = equivalent_command(preset, name, base=base)
        except PresetError as exc:
            line.update(Text(f"Equivalent command: none: {exc.key} is empty, and --set cannot clear a key; "
                             "save as a preset (s)"))
            return
        line.update(Text(f"Equivalent command: {command}"))

    @property
    def command_text(self) -> str:
        """The equivalent-command line as shown."""
        return str(self.query_one("#equiv-command", Static).render())

    def first_invalid(self) -> FieldRow | None:
        for row in self.query(FieldRow):
            if row.has_class("invalid"):
                return row
        return None

    def _show_sizes(self, preset: Preset | None) -> None:
        sizes = self.query_one("#sizes", Static)
        if preset is None:
            sizes.update("Sizes: fix the preset first.")
            return
        sizes.update(sizes_text(plan_preset(preset)) + (f"\n{self.measured}" if self.measured else ""))

    def show_measured(self, text: str) -> None:
        self.measured = text
        self._show_sizes(self.current)

    # ---- keys and buttons
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":  # only from a text field: elsewhere esc goes on to the app's binding
            return isinstance(self.app.focused, Input)
        return True

    def action_leave_field(self) -> None:
        """Esc in a text field: focus back on the preset list; the field keeps what was typed."""
        self.query_one("#preset-list", OptionList).focus()

    def action_save_preset(self) -> None:
        """Ask for a path and write the fields as a preset TOML file (only when they are valid)."""
        preset = self.validate()
        if preset is None:
            row = self.first_invalid()
            if row is not None:
                row.editor.focus()
                row.scroll_visible()
            self.app.notify(f"Not saved: {self.error}", title="Fix the preset first", severity="error", timeout=6)
            return
        self.app.push_screen(SavePresetScreen(preset, f"./{_file_stem(preset.name)}.toml"), self._saved)

    def _saved(self, result: SavedPreset | None) -> None:
        if result is None:
            return
        notes = "\n".join(result.notes)
        self.app.notify(f"Wrote {result.path}" + (f"\n{notes}" if notes else ""), title="Preset saved",
                        severity="warning" if notes else "information", timeout=8 if notes else 4)

    @on(Button.Pressed, "#save-button")
    def _save_pressed(self) -> None:
        self.action_save_preset()

    @on(Button.Pressed, "#run-button")
    def _run_pressed(self) -> None:
        self.app.run_action("run")


def _same_dir(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def _file_stem(name: str) -> str:
    """A preset's name as a file name: runs of anything but letters, digits, _ . - become one -."""
    return re.sub(r"[^\w.-]+", "-", name, flags=re.ASCII).strip(".-") or "preset"


def sizes_text(p: Plan) -> str:
    """The planner's Plan in words: N, k, d, G's size, the route and its peak, the Hessian mode."""
    def n(v: int | None) -> str:
        return "?" if v is None else f"{v:,}"

    head = f"N = {n(p.n_params)} parameters · k = {n(p.n_train)} inputs · d = {n(p.out_dim)}"
    if not p.known or p.g_bytes is None:
        return f"{head}  ({p.why_unknown}: known once the run starts)"
    hess = {"dense": f"dense Hessian {fmt_bytes(p.hessian_bytes or 0)}", "lanczos": "Hessian by Lanczos (matrix-free)",
            "off": "Hessian off"}.get(p.hessian_mode or "", str(p.hessian_mode))
    route = ROUTE_WORDS.get(p.route or "", p.route or "")
    return (f"{head}\nG is {p.n_params:,} × {p.kd:,} ({fmt_bytes(p.g_bytes)}); spectrum {route}, peak ≈ "
            f"{fmt_bytes(p.peak_bytes or 0)}; {hess}")


ROUTE_WORDS = {
    "factored": "by the factored Gram",
    "explicit": "from G itself",
    "streamed-params": "by a Gram streamed over parameter chunks",
    "streamed-inputs": "by a Gram streamed over input chunks",
    "matfree": "top only, matrix-free",
    "none": "by no route that fits (the run will refuse)",
}
