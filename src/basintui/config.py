"""Preset schema: frozen dataclasses, TOML loading, `--set` overrides and one validation pass.

Config is inert: nothing here imports torch or does work. Every error names the dotted key,
the offending value and what is allowed (`PresetError`), so the CLI can exit 2 with one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_KINDS = ("gaussian", "xor", "moons", "circles", "parity", "sine", "digits", "file", "modular")
LAYOUTS = ("flat", "image")  # data.layout: digits as flat vectors (64) or as images (1, 8, 8)
TARGET_KINDS = ("teacher", "random", "self", "labels")
MODEL_KINDS = ("mlp", "python", "cnn", "transformer", "resmlp")
ZOO_KINDS = ("cnn", "transformer", "resmlp")  # built-in architectures beyond the MLP (engine/problem/zoo.py)
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid", "leaky_relu", "linear")
LOSSES = ("mse", "bce", "ce")
OPTIMIZERS = ("adam", "sgd", "lbfgs")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float64", "float32")
HESSIAN_MODES = ("auto", "dense", "lanczos", "off")
CE_OUTPUTS = ("logits", "probabilities")
SPECTRUM_ROUTES = ("auto", "explicit", "factored", "streamed", "matfree")

# Kinds whose input dimension is fixed by the data set itself.
NATURAL_DIM = {"xor": 2, "moons": 2, "circles": 2, "digits": 64, "modular": 2}
IMAGE_KINDS = ("digits",)  # kinds that data.layout = "image" keeps 2-D
IMAGE_SHAPE = (1, 8, 8)  # digits as images: (channels, height, width)
TOKEN_POSITIONS = 2  # modular data: the sequence (a, b)
DEFAULT_P = 23  # data.p when left out (modular)
MAX_P = 1000  # p² pairs ≤ MAX_N
DEFAULT_N = 64  # data.n when left out (file: every row)
DEFAULT_DIM = {"gaussian": 8, "parity": 6, "sine": 1}  # data.dim when left out (the other kinds: NATURAL_DIM)

# Limits on what a preset file or a `--set` value may be before it is parsed at all (FIELD-NOTES:
# tomllib fails with UnicodeDecodeError / RecursionError / ValueError on such input, and its time
# grows faster than linearly in the parts of a dotted key).
MAX_PRESET_BYTES = 1 << 20  # 1 MiB: a preset is a few hundred bytes
MAX_KEY_PARTS = 32  # dotted-key parts anywhere in the text (the schema needs 2)
MAX_NESTING = 32  # arrays / inline tables inside each other (the schema needs 1)
MAX_SHOWN = 200  # characters of a user's value an error message echoes
MAX_N = 1_000_000  # training inputs k = data.n + data.duplicates
MAX_LAYERS = 1000  # entries of model.hidden
MAX_SEED = 2**32 - 1  # torch.manual_seed and numpy take it (the engine adds small offsets to it)
LABELLED_KINDS = ("xor", "moons", "circles", "parity", "sine", "digits", "file", "modular")


def show(value: Any, limit: int = MAX_SHOWN) -> str:
    """repr(value) on one line and at most about `limit` characters (a 10 MB value is not echoed)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, MemoryError):  # deeply nested, or an int too long to print
        return f"<{type(value).__name__} that cannot be shown>"
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text)} characters)"
    return text


def _show_key(key: str, limit: int = 120) -> str:
    """A key as the user wrote it when it is short and printable, else quoted and clipped."""
    if isinstance(key, str) and key.isprintable() and len(key) <= limit:
        return key
    return show(key, limit)


class PresetError(ValueError):
    """A preset that cannot be used. `key` is the dotted key (or the file) at fault.

    The message is one line: the key, the value (clipped to about MAX_SHOWN characters) and what
    is allowed."""

    def __init__(self, key: str, value: Any, allowed: str, *, source: str = "") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{_show_key(source, 400)}: " if source else ""
        allowed_text = " ".join(str(allowed).split())  # one line, whatever the caller passed
        if len(allowed_text) > 4 * MAX_SHOWN:
            allowed_text = allowed_text[: 4 * MAX_SHOWN] + "…"
        super().__init__(f"{where}{_show_key(key)} = {show(value)} is not allowed: {allowed_text}")


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
    layout: str = "flat"  # digits: "flat" (k, 64) or "image" (k, 1, 8, 8)
    p: int | None = None  # modular: the modulus (None: DEFAULT_P)
    train_fraction: float | None = None  # modular: the share of the p² pairs trained on (None: all)


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"
    hidden: tuple[int, ...] = (16, 16)
    activation: str = "relu"
    bias: bool = True
    factory: str = ""
    checkpoint: str = ""  # a state_dict (.pt / .pth / .safetensors) loaded into the model before training
    heads: int | None = None  # transformer: attention heads (None: 1)
    layernorm: bool = True  # transformer, resmlp: LayerNorms (false: none; the other kinds have none)


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
    symmetry: bool = True  # split G's kernel into symmetry, dead-unit and data-dependent directions
    soft: bool = True  # N_eff(z) and log det(GGᵀ + εI) beside the hard rank
    probe: int | str = 0  # rank(G) on other inputs too: 0 = off, a count (drawn), or a file (.npz/.npy/.csv)
    llc: bool = False  # the local learning coefficient λ̂ by SGLD (settings in [llc])
    slices: bool = False  # a 2-D loss slice through θ along a data-dependent flat direction and the top one


@dataclass(frozen=True)
class LlcConfig:
    """[llc]: the SGLD estimate of the local learning coefficient (analysis.llc = true)."""

    chains: int = 4
    draws: int = 400
    burnin: int = 200
    step: float = 0.0  # SGLD step ε; 0 = automatic (1 % Euler bias on the stiffest direction)
    gamma: float = 1.0  # localisation strength γ
    beta: float = 0.0  # inverse temperature; 0 = 1 / log n


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
    llc: LlcConfig = field(default_factory=LlcConfig)
    source_dir: str = ""  # folder of the preset file: user factories and data paths resolve here

    def to_dict(self) -> dict[str, Any]:
        """The resolved preset, as TOML-able plain data (what the report stores as `config`)."""
        out = dataclasses.asdict(self)
        out.pop("source_dir")
        for section in SECTIONS:
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
    "llc": LlcConfig,
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
        try:
            out = float(value)
        except OverflowError:  # an integer beyond float range
            raise PresetError(key, value, "a finite number", source=source) from None
        if not math.isfinite(out):
            raise PresetError(key, value, "a finite number (not nan or inf)", source=source)
        return out
    if base == "int | str":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise PresetError(key, value, "an integer or a string (a file)", source=source)
        return value
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
    _range("seed", p.seed, 0 <= p.seed <= MAX_SEED, f"an integer from 0 to {MAX_SEED} (2**32 - 1)", s)
    _validate_data(p, s)
    _validate_model(p.model, s)
    _validate_checkpoint(p.model.checkpoint, p.source_dir, s)
    _validate_zoo(p, s)
    _validate_train(p.train, p.data, s)
    _validate_analysis(p.analysis, s)
    _validate_probe(p.analysis.probe, p.source_dir, s)
    _validate_llc(p.llc, s)


def _validate_data(p: Preset, s: str) -> None:
    d = p.data
    _enum("data.kind", d.kind, DATA_KINDS, s)
    _enum("data.targets", d.targets, TARGET_KINDS, s)
    _range("data.n", d.n, d.n is None or 1 <= d.n <= MAX_N, f"an integer from 1 to {MAX_N}", s)
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
    if d.rank is not None and d.dim is None and d.rank > DEFAULT_DIM["gaussian"]:
        raise PresetError("data.rank", d.rank, f"at most data.dim, which is {DEFAULT_DIM['gaussian']} when left "
                          "out: set data.dim too", source=s)
    _range("data.out_dim", d.out_dim, 1 <= d.out_dim <= 10_000, "an integer from 1 to 10000", s)
    _range("data.duplicates", d.duplicates, 0 <= d.duplicates <= MAX_N, f"an integer from 0 to {MAX_N}", s)
    n_base = d.n if d.n is not None else (DEFAULT_N if d.kind != "file" else 0)
    if n_base + d.duplicates > MAX_N:
        raise PresetError("data.duplicates", d.duplicates, f"at most {MAX_N - n_base}: data.n + data.duplicates "
                          f"(here {n_base} + {d.duplicates}) is the number of training inputs, at most {MAX_N}",
                          source=s)
    if d.kind == "file":
        if not d.path:
            raise PresetError("data.path", d.path, "a .npz or .csv file when data.kind = 'file'", source=s)
        if Path(d.path).suffix.lower() not in (".npz", ".csv"):
            raise PresetError("data.path", d.path, "a file ending in .npz or .csv", source=s)
        path = resolve_path(d.path, p.source_dir)
        if not _is_file(path):
            raise PresetError("data.path", d.path, f"an existing file (looked for {path})", source=s)
    if d.targets == "labels" and d.kind not in LABELLED_KINDS:
        raise PresetError(
            "data.targets", d.targets, f"teacher, random or self: data.kind = {d.kind!r} has no labels", source=s
        )
    _validate_layout(d, s)
    _validate_modular(d, s)


def _validate_layout(d: DataConfig, s: str) -> None:
    _enum("data.layout", d.layout, LAYOUTS, s)
    if d.layout == "image" and d.kind not in IMAGE_KINDS:
        raise PresetError("data.layout", d.layout, f"'flat' for data.kind = {d.kind!r}; 'image' is for "
                          + ", ".join(IMAGE_KINDS), source=s)


def modular_pairs(p: int, fraction: float) -> int:
    """How many of the p² pairs (a, b) the modular data trains on: round(fraction · p²)."""
    return int(round(fraction * p * p))


def _validate_modular(d: DataConfig, s: str) -> None:
    if d.kind != "modular":
        for key, value in (("p", d.p), ("train_fraction", d.train_fraction)):
            if value is not None:
                raise PresetError(f"data.{key}", value, "only with data.kind = 'modular' (leave it out)", source=s)
        return
    if d.n is not None:
        raise PresetError("data.n", d.n, "left out for data.kind = 'modular': the inputs are round(train_fraction "
                          "× p²) of the p² pairs (a, b); set data.p and data.train_fraction instead", source=s)
    _range("data.p", d.p, d.p is None or 2 <= d.p <= MAX_P, f"an integer from 2 to {MAX_P}", s)
    f = d.train_fraction
    _range("data.train_fraction", f, f is None or 0 < f <= 1, "a number in (0, 1]: the share of the p² pairs "
           "trained on", s)
    p = d.p if d.p is not None else DEFAULT_P
    if modular_pairs(p, 1.0 if f is None else f) < 1:
        raise PresetError("data.train_fraction", f, f"at least 1/p² = {1 / p**2:.3g} (p = {p}): "
                          f"round({f} × {p}²) is no pair at all", source=s)


def _validate_model(m: ModelConfig, s: str) -> None:
    _enum("model.kind", m.kind, MODEL_KINDS, s)
    _enum("model.activation", m.activation, ACTIVATIONS, s)
    if len(m.hidden) > MAX_LAYERS:
        raise PresetError("model.hidden", list(m.hidden), f"at most {MAX_LAYERS} hidden layers", source=s)
    if any(h < 1 or h > 1_000_000 for h in m.hidden):
        raise PresetError("model.hidden", list(m.hidden), "widths from 1 to 1000000", source=s)
    if m.kind == "python" and not factory_ok(m.factory):
        raise PresetError("model.factory", m.factory, "'module:function' when model.kind = 'python', the module a "
                          "dotted name of Python identifiers (no leading dot: it is looked up in the preset's folder, "
                          "then among installed packages) and the function an identifier", source=s)


def zoo_heads(m: ModelConfig) -> int:
    return 1 if m.heads is None else m.heads


def zoo_layernorm(m: ModelConfig) -> bool:
    return m.layernorm


def _validate_zoo(p: Preset, s: str) -> None:
    """What the built-in architectures need from the model keys and from the data."""
    m, d, kind = p.model, p.data, p.model.kind
    if m.heads is not None and kind != "transformer":
        raise PresetError("model.heads", m.heads, "only with model.kind = 'transformer' (leave it out)", source=s)
    if not m.layernorm and kind not in ("transformer", "resmlp"):
        raise PresetError("model.layernorm", m.layernorm, f"true for model.kind = {kind!r} (leave it out): only "
                          "transformer and resmlp have LayerNorms to turn off", source=s)
    if d.layout == "image" and kind not in ("cnn", "python"):
        raise PresetError("data.layout", d.layout, f"'flat' for model.kind = {kind!r}, which takes flat vectors; "
                          "image inputs (k, 1, 8, 8) need model.kind = 'cnn' or 'python'", source=s)
    if kind == "cnn":
        _validate_cnn(m, d, s)
    elif kind == "transformer":
        _validate_transformer(p, s)
    elif kind == "resmlp" and (not m.hidden or len(set(m.hidden)) != 1):
        raise PresetError("model.hidden", list(m.hidden), "one width per residual block, all equal (the residual "
                          "adds a block's input to its output), e.g. [64, 64]", source=s)


def _validate_cnn(m: ModelConfig, d: DataConfig, s: str) -> None:
    if d.layout != "image":
        raise PresetError("model.kind", m.kind, f"a model that takes flat vectors (mlp, resmlp) for data.kind = "
                          f"{d.kind!r} with data.layout = {d.layout!r}; cnn needs images: data.kind = 'digits' with "
                          "data.layout = 'image'", source=s)
    if not m.hidden:
        raise PresetError("model.hidden", list(m.hidden), "the channels of each conv layer for cnn, e.g. [4, 8]",
                          source=s)


def _validate_transformer(p: Preset, s: str) -> None:
    m, d = p.model, p.data
    if d.kind != "modular":
        raise PresetError("model.kind", m.kind, f"mlp, resmlp or python for data.kind = {d.kind!r}; transformer "
                          "needs token inputs: data.kind = 'modular'", source=s)
    if d.targets != "labels" or p.train.loss not in ("ce", "mse"):
        raise PresetError("data.targets" if d.targets != "labels" else "train.loss",
                          d.targets if d.targets != "labels" else p.train.loss,
                          "data.targets = 'labels' with train.loss = 'ce' or 'mse' for model.kind = 'transformer' "
                          "(its p outputs are the classes (a + b) mod p, unembedded from its p tokens)", source=s)
    if len(m.hidden) != 2:
        raise PresetError("model.hidden", list(m.hidden), "[width, mlp_width] for transformer, e.g. [32, 128]",
                          source=s)
    if p.train.loss == "mse" and (d.p or DEFAULT_P) == 2:
        raise PresetError("train.loss", "mse", "ce for p = 2 with model.kind = 'transformer' (mse on two classes "
                          "has one output, and the transformer needs one logit per token)", source=s)
    heads = zoo_heads(m)
    if not (1 <= heads <= m.hidden[0] and m.hidden[0] % heads == 0):
        raise PresetError("model.heads", m.heads, f"a divisor of the width model.hidden[0] = {m.hidden[0]}", source=s)


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


def _validate_checkpoint(given: str, source_dir: str, s: str) -> None:
    """model.checkpoint: empty (none), or an existing .pt / .pth / .safetensors file (relative to the
    preset's folder, then the working directory). What is in it is checked by the engine."""
    if not given:
        return
    if Path(given).suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise PresetError("model.checkpoint", given, "a file ending in .pt, .pth (torch.save of a state_dict) or "
                          ".safetensors", source=s)
    path = resolve_path(given, source_dir)
    if not _is_file(path):
        raise PresetError("model.checkpoint", given, f"an existing file (looked for {path})", source=s)


def _validate_train(t: TrainConfig, d: DataConfig, s: str) -> None:
    _enum("train.loss", t.loss, LOSSES, s)
    _enum("train.optimizer", t.optimizer, OPTIMIZERS, s)
    _range("train.lr", t.lr, 0 < t.lr <= 1e3, "a number > 0 (and at most 1000)", s)
    _range("train.steps", t.steps, 0 <= t.steps <= 10_000_000, "an integer from 0 to 10000000", s)
    _range("train.batch_size", t.batch_size, 0 <= t.batch_size <= MAX_N, f"an integer from 0 to {MAX_N} (0 = full batch)", s)
    _range("train.target_loss", t.target_loss, t.target_loss >= 0, "a number >= 0", s)
    if t.loss == "bce" and d.targets == "labels" and d.kind == "digits":
        raise PresetError("train.loss", t.loss, "mse or ce: digits has 10 classes, bce needs 2", source=s)


def _validate_analysis(a: AnalysisConfig, s: str) -> None:
    _range("analysis.rtol", a.rtol, 0 <= a.rtol < 1, "a number in [0, 1) (0 = the default rule)", s)
    _enum("analysis.hessian", a.hessian, HESSIAN_MODES, s)
    _enum("analysis.ce_output", a.ce_output, CE_OUTPUTS, s)
    _range("analysis.rank_every", a.rank_every, -1 <= a.rank_every <= 10_000_000,
           "an integer from -1 to 10000000 (0 = auto, -1 = never)", s)
    _enum("analysis.route", a.route, SPECTRUM_ROUTES, s)
    _range("analysis.top_k", a.top_k, 1 <= a.top_k <= 10_000, "an integer from 1 to 10000", s)


PROBE_SUFFIXES = (".npz", ".npy", ".csv")
MAX_CHAINS = 256
MAX_SGLD_STEPS = 1_000_000


def _validate_probe(probe: int | str, source_dir: str, s: str) -> None:
    """analysis.probe: 0 (off), a count of inputs to draw (1 to MAX_N), or an existing .npz/.npy/.csv file."""
    if isinstance(probe, int):
        _range("analysis.probe", probe, 0 <= probe <= MAX_N,
               f"0 (off), a count of probe inputs from 1 to {MAX_N}, or a file (.npz, .npy, .csv)", s)
        return
    if Path(probe).suffix.lower() not in PROBE_SUFFIXES:
        raise PresetError("analysis.probe", probe, "0 (off), a count of probe inputs, or a file ending in .npz "
                          "(an array x), .npy or .csv (a label in the last column)", source=s)
    path = resolve_path(probe, source_dir)
    if not _is_file(path):
        raise PresetError("analysis.probe", probe, f"an existing file (looked for {path}), or a count", source=s)


def _validate_llc(c: LlcConfig, s: str) -> None:
    _range("llc.chains", c.chains, 2 <= c.chains <= MAX_CHAINS, f"an integer from 2 to {MAX_CHAINS} (the spread "
           "across chains is the estimate's error bar)", s)
    _range("llc.draws", c.draws, 1 <= c.draws <= MAX_SGLD_STEPS, f"an integer from 1 to {MAX_SGLD_STEPS}", s)
    _range("llc.burnin", c.burnin, 0 <= c.burnin <= MAX_SGLD_STEPS, f"an integer from 0 to {MAX_SGLD_STEPS}", s)
    _range("llc.step", c.step, 0 <= c.step <= 1, "a number in [0, 1] (0 = automatic)", s)
    _range("llc.gamma", c.gamma, 0 <= c.gamma <= 1e9, "a number from 0 to 1e9 (the localisation strength)", s)
    _range("llc.beta", c.beta, 0 <= c.beta <= 1e6, "a number from 0 to 1e6 (0 = 1 / log n)", s)


def factory_ok(spec: str) -> bool:
    """'package.module:function' with every part a Python identifier (so no relative import, no path)."""
    mod, sep, fn = spec.partition(":")
    return bool(sep) and fn.isidentifier() and all(part.isidentifier() for part in mod.split("."))


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def resolve_path(path: str, source_dir: str) -> Path:
    """A relative path in a preset is relative to the preset's folder, then to the working directory."""
    try:
        p = Path(os.path.expanduser(path))
    except (RuntimeError, ValueError):  # expanduser of an unknown ~user can raise on some platforms
        p = Path(path)
    if p.is_absolute():
        return p
    if source_dir and _exists(Path(source_dir) / p):
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
            raw = parse_toml_bytes(_read_capped(f), str(f))
            out.append((f.stem, str(raw.get("description", ""))))
        except PresetError as exc:
            out.append((f.stem, f"(unreadable: {exc.allowed})"))
    return out


def find_preset(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a built-in preset (without .toml)."""
    try:
        p = Path(os.path.expanduser(name_or_path))
    except (RuntimeError, ValueError):
        p = Path(name_or_path)
    if p.suffix == ".toml" or os.sep in name_or_path:
        if _is_file(p):
            return p
        raise PresetError("preset", name_or_path, "an existing .toml file or a preset name (see `basintui presets`)")
    candidate = presets_dir() / f"{name_or_path}.toml"
    if _is_file(candidate):
        return candidate
    if _is_file(p):
        return p
    names = ", ".join(n for n, _ in list_presets()) or "(none found)"
    raise PresetError("preset", name_or_path, f"a .toml path or one of: {names}")


# --------------------------------------------------------------------------- parsing untrusted text

# One part of a dotted key: a bare key, a "basic" or a 'literal' string. Possessive quantifiers and
# the look-behind (a run is only tried from its start) keep the scan linear in the text's length.
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_LONG_DOTTED_KEY = re.compile(rf"""(?<![A-Za-z0-9_\-"'.])(?:{_KEY_PART}[ \t]*+\.[ \t]*+){{{MAX_KEY_PARTS}}}""")


def _depth(value: Any) -> int:
    """How deeply arrays and tables nest in a parsed value (iterative: no recursion on deep input)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            items = v.values()
        elif isinstance(v, list):
            items = v
        else:
            continue
        deepest = max(deepest, d + 1)
        if deepest > MAX_NESTING + 1:
            return deepest
        stack.extend((item, d + 1) for item in items)
    return deepest


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {col}"


def parse_toml_text(text: str, what: str, *, key: str = "TOML") -> dict[str, Any]:
    """tomllib.loads on text nobody checked: every failure is a PresetError naming `key` and `what`
    (the file, or the --set item), never a traceback, and the time stays linear in the length."""
    m = _LONG_DOTTED_KEY.search(text)
    if m is not None:
        raise PresetError(key, what, f"dotted keys of at most {MAX_KEY_PARTS} parts (one of more starts at "
                          f"{_where(text, m.start())}; a preset's keys have at most 2)")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(key, what, f"valid TOML ({exc})") from None
    except RecursionError:
        raise PresetError(key, what, f"arrays or tables nested at most {MAX_NESTING} deep "
                          "(these nest too deeply to parse)") from None
    except ValueError as exc:  # an integer of more than 4300 digits, and anything like it
        reason = str(exc).split(":")[0]
        raise PresetError(key, what, f"numbers Python can read ({reason})") from None
    if _depth(raw) > MAX_NESTING + 1:  # +1: the document itself is a table
        raise PresetError(key, what, f"arrays or tables nested at most {MAX_NESTING} deep")
    return raw


def parse_toml_bytes(data: bytes, what: str) -> dict[str, Any]:
    """A preset file's bytes: at most MAX_PRESET_BYTES of UTF-8 (a BOM is allowed), then TOML."""
    if len(data) > MAX_PRESET_BYTES:
        raise PresetError("preset", what, f"a file of at most {MAX_PRESET_BYTES} bytes (1 MiB); this one has "
                          f"{len(data)}{' or more' if len(data) == MAX_PRESET_BYTES + 1 else ''}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        before = data[:start].decode("utf-8", errors="replace")
        raise PresetError("TOML", what, f"UTF-8 text (byte {start} = 0x{data[start]:02x}, at "
                          f"{_where(before, len(before))}, is not UTF-8: {exc.reason})") from None
    return parse_toml_text(text, what)


def _read_capped(path: Path) -> bytes:
    """At most MAX_PRESET_BYTES + 1 bytes of a file (one more than allowed says it is too big)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_PRESET_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise PresetError("preset", str(path), f"a readable file ({getattr(exc, 'strerror', None) or exc})") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=VALUE` with VALUE in TOML syntax; a bare word is taken as a string."""
    if "=" not in item:
        raise PresetError("--set", item, "KEY=VALUE, e.g. --set model.hidden=[64,64]")
    key, _, text = item.partition("=")
    key = key.strip()
    parts = key.split(".", MAX_KEY_PARTS)
    if not key or any(not part.strip() for part in parts):
        raise PresetError("--set", item, "a dotted key such as train.steps=100")
    if len(parts) > 2:
        raise PresetError(key, text, "a key at most one level deep, e.g. train.lr")
    if len(text) > MAX_PRESET_BYTES:
        raise PresetError(key, text, f"a value of at most {MAX_PRESET_BYTES} characters")
    parts = [part.strip() for part in parts]
    try:
        value = parse_toml_text(f"v = {text}", f"--set {item}", key=key)
    except PresetError as exc:
        if exc.allowed.startswith("valid TOML"):
            return parts, text  # not TOML: a bare word, taken as a string
        raise PresetError(key, text, exc.allowed) from None
    if set(value) != {"v"}:
        raise PresetError(key, text, "one TOML value (this text defines other keys too)")
    return parts, value["v"]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        parts, value = parse_override(item)
        if len(parts) > 2:  # pragma: no cover - parse_override refuses them
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
    """The loader the CLI, the app and the server call: any bad file or `--set` item raises
    PresetError (one line, the key, a clipped value and what is allowed), nothing else."""
    path = find_preset(name_or_path)
    raw = parse_toml_bytes(_read_capped(path), str(path))
    raw = apply_overrides(raw, list(overrides))
    raw.setdefault("name", path.stem)
    try:
        source_dir = str(path.resolve().parent)
    except (OSError, RuntimeError):
        source_dir = str(path.parent)
    return from_dict(raw, source=str(path), source_dir=source_dir)


def load_text(text: str, *, source: str = "<text>", source_dir: str = "") -> Preset:
    """A preset from TOML text (the app's editor uses this)."""
    if len(text) > MAX_PRESET_BYTES:
        raise PresetError("preset", source, f"a text of at most {MAX_PRESET_BYTES} characters")
    raw = parse_toml_text(text, source)
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
