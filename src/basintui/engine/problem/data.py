"""Training inputs: synthetic tasks, scikit-learn's digits, and user files.

`make_inputs` returns inputs and (where the kind has them) labels, deterministic for a seed.
Targets that need the model (teacher, self) are made from its outputs (`outputs_to_targets`) once it exists.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...config import (DEFAULT_DIM, DEFAULT_N, DEFAULT_P, IMAGE_SHAPE, MAX_N, NATURAL_DIM, DataConfig, modular_pairs,
                       resolve_path)
from ...limits import SAFETY, fmt_bytes, host_available_bytes
from ..errors import InputError

CSV_BYTES_PER_BYTE = 8  # genfromtxt peaks near 5.7 bytes of memory per byte of text (measured, 46 MB csv)


@dataclass(frozen=True)
class Inputs:
    x: np.ndarray  # (k, dim) float64; (k, 1, 8, 8) for digits as images; (k, 2) int64 tokens for modular
    labels: np.ndarray | None  # (k,) int classes, or (k, t) float regression values, or None
    n_classes: int  # 0 when labels are real-valued or absent
    duplicate_of: dict[int, int] = field(default_factory=dict)  # appended index -> original index
    description: str = ""


def input_shape(cfg: DataConfig) -> tuple[int, int] | None:
    """(k, dim) of the inputs `make_inputs` will make, duplicates included, known from the preset alone
    (None for a file: its size is known once read). The session prices them before making them."""
    if cfg.kind == "file":
        return None
    if cfg.kind == "modular":
        return modular_count(cfg) + cfg.duplicates, NATURAL_DIM["modular"]
    n = cfg.n if cfg.n is not None else DEFAULT_N
    dim = NATURAL_DIM.get(cfg.kind) or (cfg.dim if cfg.dim is not None else DEFAULT_DIM.get(cfg.kind, 2))
    return n + cfg.duplicates, dim


Made = tuple[np.ndarray, "np.ndarray | None", int, str]  # x, labels, n_classes, description


def _gaussian(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    r = cfg.rank if cfg.rank is not None else min(n, dim)
    z = rng.standard_normal((n, r))
    basis = np.linalg.qr(rng.standard_normal((dim, r)))[0].T  # (r, dim), orthonormal rows
    return z @ basis, None, 0, f"{n} Gaussian inputs in R^{dim} spanning a {min(r, n, dim)}-dimensional subspace"


def _xor(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    x = corners[np.arange(n) % 4].copy()
    if n > 4:
        x[4:] += 0.1 * rng.standard_normal((n - 4, 2))
    labels = (x[:, 0] * x[:, 1] < 0).astype(np.int64)
    return x, labels, 2, f"XOR: {n} points around the corners of [-1, 1]^2 (noise 0.1 beyond the first 4)"


def _sklearn_2d(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    from sklearn.datasets import make_circles, make_moons

    maker = make_moons if cfg.kind == "moons" else make_circles
    kwargs = {"noise": 0.1} if cfg.kind == "moons" else {"noise": 0.05, "factor": 0.5}
    x, labels = maker(n_samples=n, random_state=seed, **kwargs)
    return x, labels.astype(np.int64), 2, f"{cfg.kind}: {n} points in R^2, two classes"


def _parity(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    if n > 2**dim:
        raise InputError("data.n", f"parity on {dim} bits has only {2**dim} distinct inputs, asked for {n}")
    codes = rng.choice(2**dim, size=n, replace=False)
    bits = (codes[:, None] >> np.arange(dim)[None, :]) & 1
    labels = (bits.sum(axis=1) % 2).astype(np.int64)
    return bits.astype(np.float64) * 2 - 1, labels, 2, f"parity of {dim} bits (inputs ±1): {n} distinct bit strings"


def _sine(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    x = rng.uniform(-np.pi, np.pi, size=(n, dim))
    return x, np.sin(x.sum(axis=1, keepdims=True)), 0, f"sine: y = sin(sum x), {n} inputs uniform in [-pi, pi]^{dim}"


def _digits(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    from sklearn.datasets import load_digits

    digits = load_digits()
    if n > len(digits.target):
        raise InputError("data.n", f"digits has {len(digits.target)} images, asked for {n}")
    idx = np.sort(rng.choice(len(digits.target), size=n, replace=False))
    x = digits.data[idx].astype(np.float64) / 16.0
    image = cfg.layout == "image"
    if image:
        x = x.reshape(n, *IMAGE_SHAPE)
    return (x, digits.target[idx].astype(np.int64), 10, f"scikit-learn digits: {n} of {len(digits.target)} 8x8 "
            f"images (pixels / 16{', kept 2-D: (1, 8, 8) each' if image else ''}), 10 classes")


def modular_count(cfg: DataConfig) -> int:
    """k before duplicates: round(train_fraction · p²)."""
    p = cfg.p if cfg.p is not None else DEFAULT_P
    return modular_pairs(p, 1.0 if cfg.train_fraction is None else cfg.train_fraction)


def _modular(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    """round(f·p²) of the p² pairs (a, b), drawn without replacement with the seed and kept in (a, b) order;
    x the tokens (int64), the label (a + b) mod p."""
    p = cfg.p if cfg.p is not None else DEFAULT_P
    k = modular_count(cfg)
    idx = np.sort(rng.choice(p * p, size=k, replace=False))
    x = np.stack([idx // p, idx % p], axis=1).astype(np.int64)
    share = "all" if k == p * p else f"{k} ({k / (p * p):.1%})"
    return x, ((x[:, 0] + x[:, 1]) % p).astype(np.int64), p, (f"modular addition: {share} of the {p * p} pairs "
                                                               f"(a, b) in [0, {p})², label (a + b) mod {p}")


def _file(cfg: DataConfig, n: int, dim: int, rng: np.random.Generator, seed: int, source_dir: str) -> Made:
    x, labels, n_classes = _load_file(resolve_path(cfg.path, source_dir))
    if cfg.n is not None:
        if cfg.n > len(x):
            raise InputError("data.n", f"{cfg.path} has {len(x)} rows, asked for {cfg.n}")
        x, labels = x[: cfg.n], labels[: cfg.n]
    if len(x) > MAX_N:
        raise InputError("data.n", f"{cfg.path} has {len(x)} rows; at most {MAX_N} training inputs are allowed "
                         f"(set data.n to use the first ones)")
    return x, labels, n_classes, f"file {cfg.path}: {len(x)} rows, {x.shape[1]} features"


_MAKERS = {"gaussian": _gaussian, "xor": _xor, "moons": _sklearn_2d, "circles": _sklearn_2d, "parity": _parity,
           "sine": _sine, "digits": _digits, "file": _file, "modular": _modular}


def make_inputs(cfg: DataConfig, seed: int, source_dir: str = "") -> Inputs:
    """The inputs (and labels, where the kind has them) for a seed, then `data.duplicates` exact copies of
    randomly chosen ones appended (drawn from the same generator, after the inputs)."""
    rng = np.random.default_rng(seed)
    kind = cfg.kind
    n = cfg.n if cfg.n is not None else DEFAULT_N
    dim = cfg.dim if cfg.dim is not None else DEFAULT_DIM.get(kind, 2)
    maker = _MAKERS.get(kind)
    if maker is None:  # pragma: no cover - config validation rejects it
        raise InputError("data.kind", f"unknown kind {kind!r}")
    x, labels, n_classes, desc = maker(cfg, n, dim, rng, seed, source_dir)
    x = np.ascontiguousarray(x, dtype=np.int64 if kind == "modular" else np.float64)
    duplicate_of: dict[int, int] = {}
    if len(x) + cfg.duplicates > MAX_N:
        raise InputError("data.duplicates", f"{cfg.duplicates} duplicates of {len(x)} inputs make "
                         f"{len(x) + cfg.duplicates} training inputs; at most {MAX_N} are allowed")
    if cfg.duplicates:
        src = rng.integers(0, len(x), size=cfg.duplicates)
        duplicate_of = {len(x) + j: int(s) for j, s in enumerate(src)}
        x = np.concatenate([x, x[src]], axis=0)
        if labels is not None:
            labels = np.concatenate([labels, labels[src]], axis=0)
        desc += f", plus {cfg.duplicates} exact duplicates"
    return Inputs(x=x, labels=labels, n_classes=n_classes, duplicate_of=duplicate_of, description=desc)


def _first_bad_row(a: np.ndarray) -> int:
    """Index of the first row of `a` holding NaN or ±inf (a has rows along axis 0)."""
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    return int(np.argmax(bad))


def _numeric(path: Path, name: str, a: np.ndarray) -> np.ndarray:
    """A real-valued array (bool, integer or float), or an InputError naming the file and the array."""
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating):
        return a
    kinds = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers", "M": "dates",
             "m": "time deltas", "V": "records"}
    what = kinds.get(a.dtype.kind, f"dtype {a.dtype}")
    raise InputError("data.path", f"{path}: {name} holds {what} ({a.dtype}); it must hold real numbers")


# What reading a zip archive's members can raise when the file is not a readable .npz: not a zip, a
# truncated or unsupported member (zipfile: NotImplementedError for a compression method it lacks,
# RuntimeError for an encrypted member), a malformed .npy header (numpy: ValueError).
_ZIP_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError, RuntimeError)
_PICKLED = "it holds pickled Python objects, which are never unpickled (save plain numeric arrays)"


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of x and y in an .npz, from their .npy headers (nothing is decompressed but the
    header, so a small file that unpacks into a huge array is priced before it is loaded). Empty when the
    file cannot be read this way: loading it then says why."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in ("x", "y"):
                if f"{name}.npy" not in zf.namelist():
                    continue
                with zf.open(f"{name}.npy") as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _fortran, dtype = read(fh)
                out[name] = (tuple(shape), dtype)
    except _ZIP_ERRORS:
        return {}
    return out


def _npz_member_bytes(headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, int]:
    """Bytes of each array once loaded as float64 (at least 8 bytes a number)."""
    return {name: int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 8) for name, (shape, dtype) in headers.items()}


def _is_pickle(path: Path) -> bool:
    """A pickle stream rather than an archive: protocol 2 and later start with the PROTO opcode 0x80."""
    try:
        with path.open("rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False


def _check_npz(path: Path, avail: int) -> None:
    """Refuse, before loading, an .npz that is pickled or that would not fit once unpacked."""
    headers = _npz_headers(path)
    if any(dtype.hasobject for _shape, dtype in headers.values()) or (not headers and _is_pickle(path)):
        raise InputError("data.path", f"cannot read {path}: {_PICKLED}")
    need = 3 * sum(_npz_member_bytes(headers).values())  # the array, its float64 copy, the tensors made from it
    if need > SAFETY * avail:
        raise InputError("data.path", f"{path}: its arrays x and y come to {fmt_bytes(need / 3)} as float64 "
                         f"numbers once unpacked (about {fmt_bytes(need)} to load and convert) and only {fmt_bytes(avail)} is available")


def _check_size(path: Path, csv: bool) -> None:
    """Refuse a file that cannot be read or would not fit in memory once read."""
    try:
        size = path.stat().st_size
    except (OSError, ValueError) as exc:
        raise InputError("data.path", f"cannot read {path}: {exc}") from None
    avail = host_available_bytes()
    if csv and CSV_BYTES_PER_BYTE * size > SAFETY * avail:
        raise InputError("data.path", f"{path} is {fmt_bytes(size)} of text; reading it takes about "
                         f"{fmt_bytes(CSV_BYTES_PER_BYTE * size)} and only {fmt_bytes(avail)} is available (save the "
                         "arrays as .npz, or use fewer rows)")
    if not csv:
        _check_npz(path, avail)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        if "x" not in z or "y" not in z:
            raise InputError("data.path", f"{path} must hold arrays named x and y "
                             f"(found {sorted(z.keys())[:20] or 'none'})")
        return np.asarray(z["x"]), np.asarray(z["y"])


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """x, y (the last column) and the number of header rows skipped (0 or 1)."""
    header = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Empty input file": said below in words
        table = np.genfromtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if table.size == 0:
        raise InputError("data.path", f"{path} is empty: it needs rows of numbers, y in the last column")
    if np.isnan(table[0]).all():  # a header row
        table, header = table[1:], 1
    if table.ndim != 2 or table.shape[1] < 2:
        raise InputError("data.path", f"{path} needs at least two columns (features, then y last)")
    if len(table) == 0:
        raise InputError("data.path", f"{path} has a header but no rows of numbers")
    return table[:, :-1], table[:, -1], header


def _read_arrays(path: Path, csv: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """x and y as stored, and the csv header rows; any failure to read is an InputError naming the file."""
    try:
        if csv:
            return _read_csv(path)
        x, y = _read_npz(path)
        return x, y, 0
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, MemoryError) as exc:
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError("data.path", f"cannot read {path}: {msg}") from None


def _check_shapes(path: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x as a 2-D array, once x and y have shapes that pair one row of x with each entry or row of y."""
    if y.ndim == 0:
        raise InputError("data.path", f"{path}: y is a single number; it must have one entry (or row) per input")
    if y.ndim > 2:
        raise InputError("data.path", f"{path}: y has shape {y.shape}; it must be 1-D (one label or value per "
                         "input) or 2-D (one row of targets per input)")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise InputError("data.path", f"{path}: x must be a non-empty 2-D array, got shape {x.shape}")
    if len(y) != len(x):
        raise InputError("data.path", f"{path}: x has {len(x)} rows but y has {len(y)}")
    if y.ndim == 2 and y.shape[1] == 0:
        raise InputError("data.path", f"{path}: y has shape {y.shape}: no targets")
    return x


def _check_finite(path: Path, x: np.ndarray, y: np.ndarray, csv: bool, header: int) -> None:
    for name, a in (("x", x), ("y", y.astype(np.float64))):
        if not np.isfinite(a).all():
            row = _first_bad_row(a)
            where = f"line {row + 1 + header} (the first bad row)" if csv else f"{name}[{row}] (the first bad row)"
            bad = a.reshape(len(a), -1)[row]
            value = bad[~np.isfinite(bad)][0]
            raise InputError("data.path", f"{path}: {name} holds {value} at {where}; every value must be a finite "
                             "number" + (" (a cell that is not a number reads as nan)" if csv else ""))


def _labels_or_values(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Class labels 0..C−1 and C when y is 1-D and integral (at most 50 distinct values for floats), else
    float64 targets with one row per input and 0."""
    y = np.asarray(y)
    if y.dtype == bool:
        y = y.astype(np.int64)
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0) and len(np.unique(y)) <= 50
    )
    if y.ndim == 1 and integral:
        classes = np.unique(y)
        return np.searchsorted(classes, y).astype(np.int64), int(len(classes))
    y = y.astype(np.float64)
    return (y[:, None] if y.ndim == 1 else y), 0


def _load_file(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """x and y from a .npz (arrays x, y; never unpickled) or a .csv (y in the last column). Every
    way a file can be unusable is an InputError naming the file: empty, wrong shapes, non-numbers,
    NaN or ±inf (with the first bad row)."""
    csv = path.suffix.lower() != ".npz"
    _check_size(path, csv)
    x, y, header = _read_arrays(path, csv)
    x, y = _numeric(path, "x", x), _numeric(path, "y", y)
    x = _check_shapes(path, x, y).astype(np.float64)
    _check_finite(path, x, y, csv, header)
    y, n_classes = _labels_or_values(y)
    return x, y, n_classes


def out_dim_for(cfg: DataConfig, loss: str, inputs: Inputs) -> int:
    """The network's output dimension d: from the labels when the targets are labels."""
    if cfg.targets != "labels":
        return cfg.out_dim
    if inputs.n_classes:
        if loss == "ce" or (loss == "mse" and inputs.n_classes > 2):
            return inputs.n_classes
        return 1
    return int(inputs.labels.shape[1])


def labels_to_targets(inputs: Inputs, loss: str, d: int) -> np.ndarray:
    lab = inputs.labels
    if inputs.n_classes:
        if loss == "ce":
            return lab.astype(np.int64)
        if loss == "bce":
            if inputs.n_classes != 2:
                raise InputError("train.loss", f"bce needs two classes, the data has {inputs.n_classes}")
            return lab.astype(np.float64)[:, None]
        if d == 1:
            return lab.astype(np.float64)[:, None]
        return np.eye(d)[lab]
    if loss != "mse":
        raise InputError("train.loss", f"{loss} needs class labels; these labels are real numbers (use mse)")
    return lab.astype(np.float64)


def outputs_to_targets(out: np.ndarray, loss: str, soft: bool) -> np.ndarray:
    """Targets from network outputs (teacher or self). `soft` keeps probabilities (self: zero residual)."""
    if loss == "mse":
        return out.astype(np.float64)
    if loss == "bce":
        p = 1.0 / (1.0 + np.exp(-out))
        return p if soft else (p > 0.5).astype(np.float64)
    z = out - out.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p if soft else p.argmax(axis=1).astype(np.int64)


def random_targets(k: int, d: int, loss: str, rng: np.random.Generator) -> np.ndarray:
    if loss == "mse":
        return rng.standard_normal((k, d))
    if loss == "bce":
        return rng.integers(0, 2, size=(k, d)).astype(np.float64)
    if d < 2:
        raise InputError("data.out_dim", "ce needs at least 2 outputs (classes)")
    return rng.integers(0, d, size=k).astype(np.int64)
