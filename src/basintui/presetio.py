"""Writing presets: the setup as a TOML file that `basintui run FILE` reproduces, and as a command line.

Torch-free, like config.py. `preset_to_toml` writes every key (a None key is left out: TOML has no
null and a missing key means the same default), so `config.load_preset(FILE)` gives a Preset whose
`to_dict()` equals the one written: floats by their shortest round-tripping repr, strings with every
character TOML requires escaped. `equivalent_command` gives `basintui run BASE --set KEY=VALUE …` for
the keys that differ from a base preset. `write_preset_file` puts the text at a path atomically and
reports failures in words (`SaveError`).
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .config import (
    SECTIONS,
    TOP_LEVEL,
    Preset,
    PresetError,
    load_preset,
    replace,
    resolve_path,
)

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and every control character escaped (TOML forbids them raw)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate is no Unicode scalar: TOML cannot hold it
            raise ValueError(f"{text[:40]!r} holds a lone surrogate (U+{code:04X}), which TOML cannot store")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_literal(value: Any) -> str:
    """One value as TOML text that tomllib reads back equal: bool, int, float, str, and lists and
    dicts (inline tables) of them. Raises ValueError for None and for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # the shortest text that reads back as the same double ("1e-300", "0.1")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {toml_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"{type(value).__name__} {value!r} has no TOML form")


def preset_to_toml(preset: Preset) -> str:
    """The preset as a TOML file: the top-level keys, then [data] [model] [train] [analysis] with
    every key whose value is not None (None is the default, which a missing key also gives)."""
    d = preset.to_dict()
    lines = [f"{k} = {toml_literal(d[k])}" for k in TOP_LEVEL]
    for sec in SECTIONS:
        lines += ["", f"[{sec}]"]
        lines += [f"{k} = {toml_literal(v)}" for k, v in d[sec].items() if v is not None]
    return "\n".join(lines) + "\n"


def flat_items(preset: Preset) -> dict[str, Any]:
    """{dotted key: value} for every key of the preset, in the order of the TOML file."""
    d = preset.to_dict()
    out = {k: d[k] for k in TOP_LEVEL}
    for sec in SECTIONS:
        out.update({f"{sec}.{k}": v for k, v in d[sec].items()})
    return out


def overrides_between(preset: Preset, base: Preset) -> list[str]:
    """The `KEY=VALUE` items (values as TOML literals) that turn `base` into `preset`. A key that is
    set in the base and None (the default) in the preset cannot be cleared by --set: PresetError."""
    mine, theirs = flat_items(preset), flat_items(base)
    items = []
    for key, value in mine.items():
        if value == theirs[key] and type(value) is type(theirs[key]):
            continue
        if value is None:
            raise PresetError(key, theirs[key], "a value: --set cannot clear a key the base preset sets "
                              "(empty means the default); save the setup as a preset file instead")
        items.append(f"{key}={toml_literal(value)}")
    return items


def equivalent_command(preset: Preset, base_name: str, *, base: Preset | None = None) -> str:
    """`basintui run BASE --set k=v …` (shell-quoted) that runs `preset`; `basintui run BASE` when
    nothing differs. `base` is the loaded base preset when the caller has it (else it is loaded)."""
    if base is None:
        base = load_preset(base_name)
    words = ["basintui", "run", base_name]
    for item in overrides_between(preset, base):
        words += ["--set", item]
    return " ".join(shlex.quote(w) for w in words)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError, ValueError):
        return a == b


def _rebased(preset: Preset, section: str, key: str, folder: str | os.PathLike, notes: list[str]) -> Preset:
    """A relative file key (data.path, model.checkpoint) that would resolve to another file from `folder`,
    written as the absolute path it resolves to now (with a note)."""
    path = getattr(getattr(preset, section), key)
    if not path or path.startswith("~") or Path(path).is_absolute():
        return preset
    old, new = resolve_path(path, preset.source_dir), resolve_path(path, os.fspath(folder))
    if _same(old, new):
        return preset
    absolute = str(old.resolve())
    notes.append(f"{section}.{key} {path!r} is written as {absolute!r}, where it is found now")
    return replace(preset, **{section: {key: absolute}})


def for_folder(preset: Preset, folder: str | os.PathLike) -> tuple[Preset, list[str]]:
    """The preset as it must be written into `folder` to run the same, and notes on what could not be
    carried over. A relative data.path or model.checkpoint that would resolve to another file from `folder` is written as
    the absolute path it resolves to now; a model.factory module found in the preset's own folder is
    imported from the new file's folder, which a note says (copy the module beside the file)."""
    notes: list[str] = []
    old_dir, new_dir = Path(preset.source_dir or "."), Path(folder)
    for section, key in (("data", "path"), ("model", "checkpoint")):
        preset = _rebased(preset, section, key, folder, notes)
    if preset.model.kind == "python" and not _same(old_dir, new_dir):
        module = preset.model.factory.partition(":")[0].replace(".", os.sep)
        for candidate in (old_dir / f"{module}.py", old_dir / module / "__init__.py"):
            if candidate.is_file():
                notes.append(f"model.factory {preset.model.factory!r} is imported from {candidate}: copy it "
                             f"into {new_dir} (a preset's factory is looked up in the preset's folder)")
                break
    return preset, notes


class SaveError(Exception):
    """A preset file that could not be written; the message says why in words."""


def _why(exc: OSError, path: Path) -> str:
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError) or not _is_dir(path.parent):
        return f"the folder {path.parent} does not exist"
    if isinstance(exc, PermissionError):
        return f"no permission to write in {path.parent}"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder"
    return f"{path} could not be written: {reason}"


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def write_preset_file(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write `text` to `path` through atomic.write_text_atomic (a reader sees the old file or the whole
    new one). The folder must exist (it is never created). Without `overwrite`, an existing file is left
    alone: SaveError (checked just before the write; the write itself replaces)."""
    try:
        target = Path(os.path.expanduser(os.fspath(path)))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise SaveError(f"{path!r} is not a usable path ({exc})") from None
    if not target.name or _is_dir(target):
        raise SaveError(f"{target} is a folder: give a file name, e.g. {target / 'my-preset.toml'}")
    if not _is_dir(target.parent):
        raise SaveError(f"the folder {target.parent} does not exist")
    if not overwrite and (target.is_file() or target.is_symlink()):
        raise SaveError(f"{target} already exists (confirm to overwrite it)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SaveError(f"cannot write {target}: {exc}") from None
    try:
        return write_text_atomic(target, text)
    except (OSError, ValueError) as exc:
        raise SaveError(_why(exc, target) if isinstance(exc, OSError) else f"cannot write {target}: {exc}") from None
