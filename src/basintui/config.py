"""Preset schema: frozen dataclasses, TOML loading, `--set` overrides and one validation pass.

Config is inert: nothing here imports torch or does work. Every error names the dotted key,
the offending value and what is allowed (`PresetError`), so the CLI can exit 2 with one line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_KINDS = ("gaussian", "xor", "moons", "circles", "parity", "sine", "digits", "file")
TARGET_KINDS = ("teacher", "random", "self", "labels")
MODEL_KINDS = ("mlp", "python")
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid", "leaky_relu", "linear")
LOSSES = ("mse", "bce", "ce")
OPTIMIZERS = ("adam", "sgd", "lbfgs")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float64", "float32")
HESSIAN_MODES = ("auto", "dense", "lanczos", "off")
CE_OUTPUTS = ("logits", "probabilities")
SPECTRUM_ROUTES = ("auto", "explicit", "factored", "streamed", "matfree")

# Kinds whose input dimension is fixed by the data set itself.
NATURAL_DIM = {"xor": 2, "moons": 2, "circles": 2, "digits": 64}
LABELLED_KINDS = ("xor", "moons", "circles", "parity", "sine", "digits", "file")


class PresetError(ValueError):
    """A preset that cannot be used. `key` is the dotted key (or the file) at fault."""

    def __init__(self, key: str, value: Any, allowed: str, *, source: str = "") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key} = {value!r} is not allowed: {allowed}")


@dataclass(frozen=True)
class DataConfig:
    kind: str = "gaussian"
    n: int | None = None  # None: 64, or every row of a file
    dim: int | None = None  # None: the kind's natural dimension (gaussian 8)
    rank: int | None = None  # gaussian only; None: min(n, dim)
    out_dim: int = 1
    targets: str = "teacher"
    duplicates: int = 0
    path: str = ""


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"
    hidden: tuple[int, ...] = (16, 16)
    activation: str = "relu"
    bias: bool = True
    factory: str = ""


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "mse"
    optimizer: str = "adam"
    lr: float = 0.01
    steps: int = 2000
    batch_size: int = 0
    target_loss: float = 0.0


@dataclass(frozen=True)
class AnalysisConfig:
    rtol: float = 0.0
    hessian: str = "auto"
    layers: bool = True
    levelset: bool = False
    rank_every: int = 0  # live rank probes during training: 0 = automatic, -1 = never
    ce_output: str = "logits"  # what G differentiates for ce: the logits or the probabilities
    route: str = "auto"  # how G's spectrum is computed (limits.ROUTES); auto = the cheapest that fits
    top_k: int = 32  # singular values the matrix-free route finds


@dataclass(frozen=True)
class Preset:
    name: str = "untitled"
    description: str = ""
    seed: int = 0
    device: str = "auto"
    dtype: str = "float64"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    source_dir: str = ""  # folder of the preset file: user factories and data paths resolve here

    def to_dict(self) -> dict[str, Any]:
        """The resolved preset, as TOML-able plain data (what the report stores as `config`)."""
        out = dataclasses.asdict(self)
        out.pop("source_dir")
        for section in ("data", "model", "train", "analysis"):
            sec = out[section]
            for k, v in list(sec.items()):
                if isinstance(v, tuple):
                    sec[k] = list(v)
        return out


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "analysis": AnalysisConfig,
}
TOP_LEVEL = ("name", "description", "seed", "device", "dtype")


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(t, str(t))


def _check_type(key: str, value: Any, expected: str, source: str) -> Any:
    """Coerce/validate one value against the field's declared type (as a string annotation)."""
    optional = "None" in expected
    base = expected.replace(" | None", "").strip()
    if value is None and optional:
        return None
    if base == "bool":
        if not isinstance(value, bool):
            raise PresetError(key, value, "true or false", source=source)
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise PresetError(key, value, "an integer", source=source)
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PresetError(key, value, "a number", source=source)
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise PresetError(key, value, "a string", source=source)
        return value
    if base.startswith("tuple[int"):
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise PresetError(key, value, "a list of integers, e.g. [16, 16]", source=source)
        return tuple(value)
    raise AssertionError(f"unhandled field type {expected}")  # pragma: no cover


def _enum(key: str, value: str, allowed: tuple[str, ...], source: str) -> None:
    if value not in allowed:
        raise PresetError(key, value, "one of " + ", ".join(allowed), source=source)


def _range(key: str, value: float | int | None, ok: bool, allowed: str, source: str) -> None:
    if value is not None and not ok:
        raise PresetError(key, value, allowed, source=source)


def from_dict(raw: dict[str, Any], *, source: str = "", source_dir: str = "") -> Preset:
    """Build and validate a Preset from parsed TOML. Unknown keys and bad values raise PresetError."""
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    top_fields = {f.name: f for f in dataclasses.fields(Preset)}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise PresetError(key, value, f"a table [{key}]", source=source)
            cls = SECTIONS[key]
            fields = {f.name: f for f in dataclasses.fields(cls)}
            kwargs = {}
            for sub, subval in value.items():
                dotted = f"{key}.{sub}"
                if sub not in fields:
                    raise PresetError(dotted, subval, "a known key: " + ", ".join(fields), source=source)
                kwargs[sub] = _check_type(dotted, subval, str(fields[sub].type), source)
            sections[key] = cls(**kwargs)
        elif key in TOP_LEVEL:
            top[key] = _check_type(key, value, str(top_fields[key].type), source)
        else:
            allowed = ", ".join(list(TOP_LEVEL) + [f"[{s}]" for s in SECTIONS])
            raise PresetError(key, value, "a known key: " + allowed, source=source)
    preset = Preset(**top, **sections, source_dir=source_dir)
    validate(preset, source=source)
    return preset


def validate(p: Preset, *, source: str = "") -> None:
    """Every range and enum rule in one pass; raises the first PresetError found."""
    s = source
    _enum("device", p.device, DEVICES, s)
    _enum("dtype", p.dtype, DTYPES, s)
    _range("seed", p.seed, p.seed >= 0, "an integer >= 0", s)
    d = p.data
    _enum("data.kind", d.kind, DATA_KINDS, s)
    _enum("data.targets", d.targets, TARGET_KINDS, s)
    _range("data.n", d.n, d.n is None or 1 <= d.n <= 1_000_000, "an integer from 1 to 1000000", s)
    _range("data.dim", d.dim, d.dim is None or 1 <= d.dim <= 100_000, "an integer from 1 to 100000", s)
    if d.kind in NATURAL_DIM and d.dim is not None and d.dim != NATURAL_DIM[d.kind]:
        raise PresetError(
            "data.dim", d.dim, f"{NATURAL_DIM[d.kind]} for data.kind = {d.kind!r} (or leave it out)", source=s
        )
    if d.kind == "parity" and d.dim is not None and d.dim > 30:
        raise PresetError("data.dim", d.dim, "at most 30 bits for parity", source=s)
    _range("data.rank", d.rank, d.rank is None or d.rank >= 1, "an integer >= 1", s)
    if d.rank is not None and d.kind != "gaussian":
        raise PresetError("data.rank", d.rank, "only with data.kind = 'gaussian'", source=s)
    if d.rank is not None and d.dim is not None and d.rank > d.dim:
        raise PresetError("data.rank", d.rank, f"at most data.dim = {d.dim}", source=s)
    _range("data.out_dim", d.out_dim, 1 <= d.out_dim <= 10_000, "an integer from 1 to 10000", s)
    _range("data.duplicates", d.duplicates, d.duplicates >= 0, "an integer >= 0", s)
    if d.kind == "file":
        if not d.path:
            raise PresetError("data.path", d.path, "a .npz or .csv file when data.kind = 'file'", source=s)
        if Path(d.path).suffix.lower() not in (".npz", ".csv"):
            raise PresetError("data.path", d.path, "a file ending in .npz or .csv", source=s)
        path = resolve_path(d.path, p.source_dir)
        if not path.is_file():
            raise PresetError("data.path", d.path, f"an existing file (looked for {path})", source=s)
    if d.targets == "labels" and d.kind not in LABELLED_KINDS:
        raise PresetError(
            "data.targets", d.targets, f"teacher, random or self: data.kind = {d.kind!r} has no labels", source=s
        )
    m = p.model
    _enum("model.kind", m.kind, MODEL_KINDS, s)
    _enum("model.activation", m.activation, ACTIVATIONS, s)
    if any(h < 1 or h > 1_000_000 for h in m.hidden):
        raise PresetError("model.hidden", list(m.hidden), "widths from 1 to 1000000", source=s)
    if m.kind == "python" and (":" not in m.factory or m.factory.startswith(":") or m.factory.endswith(":")):
        raise PresetError("model.factory", m.factory, "'module:function' when model.kind = 'python'", source=s)
    t = p.train
    _enum("train.loss", t.loss, LOSSES, s)
    _enum("train.optimizer", t.optimizer, OPTIMIZERS, s)
    _range("train.lr", t.lr, 0 < t.lr <= 1e3, "a number > 0 (and at most 1000)", s)
    _range("train.steps", t.steps, 0 <= t.steps <= 10_000_000, "an integer from 0 to 10000000", s)
    _range("train.batch_size", t.batch_size, t.batch_size >= 0, "an integer >= 0 (0 = full batch)", s)
    _range("train.target_loss", t.target_loss, t.target_loss >= 0, "a number >= 0", s)
    if t.loss == "bce" and d.targets == "labels" and d.kind == "digits":
        raise PresetError("train.loss", t.loss, "mse or ce: digits has 10 classes, bce needs 2", source=s)
    a = p.analysis
    _range("analysis.rtol", a.rtol, 0 <= a.rtol < 1, "a number in [0, 1) (0 = the default rule)", s)
    _enum("analysis.hessian", a.hessian, HESSIAN_MODES, s)
    _enum("analysis.ce_output", a.ce_output, CE_OUTPUTS, s)
    _range("analysis.rank_every", a.rank_every, a.rank_every >= -1, "an integer >= -1 (0 = auto, -1 = never)", s)
    _enum("analysis.route", a.route, SPECTRUM_ROUTES, s)
    _range("analysis.top_k", a.top_k, 1 <= a.top_k <= 10_000, "an integer from 1 to 10000", s)


def resolve_path(path: str, source_dir: str) -> Path:
    """A relative path in a preset is relative to the preset's folder, then to the working directory."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    if source_dir and (Path(source_dir) / p).exists():
        return Path(source_dir) / p
    return p


# --------------------------------------------------------------------------- presets on disk


def presets_dir() -> Path:
    """The built-in presets: inside the installed package, or the repository's `presets/`."""
    here = Path(__file__).resolve().parent
    packaged = here / "presets"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "presets"


def list_presets() -> list[tuple[str, str]]:
    """(name, description) of every built-in preset, sorted by name; unreadable ones say why."""
    out = []
    for f in sorted(presets_dir().glob("*.toml")):
        try:
            raw = tomllib.loads(f.read_text())
            out.append((f.stem, str(raw.get("description", ""))))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            out.append((f.stem, f"(unreadable: {exc})"))
    return out


def find_preset(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a built-in preset (without .toml)."""
    p = Path(os.path.expanduser(name_or_path))
    if p.suffix == ".toml" or os.sep in name_or_path:
        if p.is_file():
            return p
        raise PresetError("preset", name_or_path, "an existing .toml file or a preset name (see `basintui presets`)")
    candidate = presets_dir() / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    if p.is_file():
        return p
    names = ", ".join(n for n, _ in list_presets()) or "(none found)"
    raise PresetError("preset", name_or_path, f"a .toml path or one of: {names}")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=VALUE` with VALUE in TOML syntax; a bare word is taken as a string."""
    if "=" not in item:
        raise PresetError("--set", item, "KEY=VALUE, e.g. --set model.hidden=[64,64]")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise PresetError("--set", item, "a dotted key such as train.steps=100")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        parts, value = parse_override(item)
        if len(parts) > 2:
            raise PresetError(".".join(parts), value, "a key at most one level deep, e.g. train.lr")
        if len(parts) == 2:
            section = out.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise PresetError(parts[0], section, f"a table [{parts[0]}]")
            section[parts[1]] = value
        else:
            out[parts[0]] = value
    return out


def load_preset(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Preset:
    path = find_preset(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PresetError("TOML", str(path), f"valid TOML ({exc})") from None
    except OSError as exc:
        raise PresetError("preset", str(path), f"a readable file ({exc.strerror})") from None
    raw = apply_overrides(raw, list(overrides))
    raw.setdefault("name", path.stem)
    return from_dict(raw, source=str(path), source_dir=str(path.resolve().parent))


def load_text(text: str, *, source: str = "<text>", source_dir: str = "") -> Preset:
    """A preset from TOML text (the app's editor uses this)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError("TOML", source, f"valid TOML ({exc})") from None
    return from_dict(raw, source=source, source_dir=source_dir)


def replace(p: Preset, **sections: dict[str, Any]) -> Preset:
    """A copy with some section fields replaced, validated again: replace(p, train={"steps": 0})."""
    raw = p.to_dict()
    for sec, vals in sections.items():
        if isinstance(vals, dict):
            raw[sec].update(vals)
        else:
            raw[sec] = vals
    return from_dict(raw, source_dir=p.source_dir)


def to_toml(p: Preset) -> str:
    """The preset as TOML text (None values left out: they mean 'the default')."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    d = p.to_dict()
    lines = [f"{k} = {fmt(d[k])}" for k in TOP_LEVEL]
    for sec in SECTIONS:
        lines.append("")
        lines.append(f"[{sec}]")
        lines.extend(f"{k} = {fmt(v)}" for k, v in d[sec].items() if v is not None)
    return "\n".join(lines) + "\n"
