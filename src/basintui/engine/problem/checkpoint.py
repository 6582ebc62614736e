"""Checkpoints: a saved state_dict loaded into the preset's model before training (`model.checkpoint`).

`.pt` / `.pth` files are read with `torch.load(weights_only=True)`, `.safetensors` files with the
safetensors package: nothing is ever unpickled beyond tensors and plain containers. The file is read
once; its SHA-256 is of exactly the bytes that were loaded. Keys and shapes are checked by basintui,
strictly, before anything is copied: every missing key, unexpected key and shape mismatch is listed in
one InputError (exit 2), before any training.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ...config import resolve_path
from ..errors import InputError

KEY = "model.checkpoint"
SUFFIXES = (".pt", ".pth", ".safetensors")
NESTED = ("state_dict", "model")  # a training checkpoint's entry that holds the model's state_dict
MAX_LISTED = 12  # keys named per kind of mismatch; the rest are counted
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Checkpoint:
    """What was read: the path as given and as resolved, the SHA-256 of the bytes, the tensors."""

    given: str
    path: str
    sha256: str
    entry: str | None  # the entry the state_dict came from ("state_dict" / "model"), None for the top level
    tensors: dict[str, torch.Tensor]

    def describe(self) -> str:
        where = f" (its {self.entry!r} entry)" if self.entry else ""
        return f"checkpoint {self.given}{where}: {len(self.tensors)} tensors, sha256 {self.sha256[:12]}…"


def read_checkpoint(given: str, source_dir: str) -> Checkpoint:
    """The file named by `model.checkpoint` (relative to the preset's folder, then the working directory)."""
    path = resolve_path(given, source_dir)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(KEY, f"{given!r} ends in {suffix or 'no suffix'!r}; basintui reads .pt / .pth "
                         "(torch.save of a state_dict) or .safetensors files")
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise InputError(KEY, f"cannot read {given!r} (looked for {path}): {type(exc).__name__}: {exc}") from None
    if not data:
        raise InputError(KEY, f"{given!r} ({path}) is empty: a truncated or unwritten file")
    raw = _read_safetensors(given, data) if suffix == ".safetensors" else _read_torch(given, data)
    entry, tensors = _state_dict_of(given, raw)
    return Checkpoint(given, str(path.resolve()), hashlib.sha256(data).hexdigest(), entry, tensors)


def _read_safetensors(given: str, data: bytes) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise InputError(KEY, f"{given!r} is not a readable safetensors file (truncated or corrupt?): "
                         f"{_first_line(exc)}") from None


def _read_torch(given: str, data: bytes) -> object:
    """torch.load with weights_only=True: tensors and plain containers only, never Python objects."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the pickle-protocol warning of a plain pickle
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:
            what = next((ln.split("GLOBAL", 1)[1].split()[0] for ln in text.splitlines() if "GLOBAL " in ln), "")
            raise InputError(KEY, f"{given!r} is a pickle of Python objects{f' ({what})' if what else ''}, not a "
                             "state_dict of tensors, and basintui never unpickles objects: save "
                             "torch.save(model.state_dict(), FILE) instead of the model itself") from None
        raise InputError(KEY, _not_torch_save(given, data)) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, TypeError) as exc:
        if data.startswith(ZIP_MAGIC):
            raise InputError(KEY, f"{given!r} is a torch.save archive that cannot be read (truncated or "
                             f"corrupt?): {_first_line(exc)}") from None
        raise InputError(KEY, _not_torch_save(given, data)) from None


def _not_torch_save(given: str, data: bytes) -> str:
    kind = "a plain pickle (pickle.dump), which basintui does not unpickle," if data[:1] == b"\x80" else \
        "neither a torch.save archive nor a safetensors file (truncated, or another format?)"
    return f"{given!r} is {kind}; save torch.save(model.state_dict(), FILE) or a .safetensors file"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _state_dict_of(given: str, raw: object) -> tuple[str | None, dict[str, torch.Tensor]]:
    """A dict of tensors, or a dict whose 'state_dict' / 'model' entry is one (the entry used is returned)."""
    if not isinstance(raw, Mapping):
        raise InputError(KEY, f"{given!r} holds a {type(raw).__name__}, not a state_dict (a dict of tensors by "
                         "parameter name)")
    if _all_tensors(raw) and raw:
        return None, {str(k): v for k, v in raw.items()}
    for entry in NESTED:
        inner = raw.get(entry)
        if isinstance(inner, Mapping) and inner and _all_tensors(inner):
            return entry, {str(k): v for k, v in inner.items()}
    others = [f"{k!r} ({type(v).__name__})" for k, v in raw.items() if not isinstance(v, torch.Tensor)][:MAX_LISTED]
    detail = f"entries that are not tensors: {', '.join(others)}" if others else "no tensors at all"
    raise InputError(KEY, f"{given!r} holds a dict that is not a state_dict ({detail}), and no "
                     f"{' or '.join(repr(e) for e in NESTED)} entry holding one")


def _all_tensors(d: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def mismatches(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Every way `tensors` does not fit `model.state_dict()`: missing and unexpected keys, shapes, dtypes
    that cannot be cast (a non-floating tensor for a floating entry), non-finite values."""
    want = model.state_dict()
    missing = [k for k in want if k not in tensors]
    unexpected = [k for k in tensors if k not in want]
    shapes = [f"{k} {list(tensors[k].shape)} in the file, {list(v.shape)} in the model"
              for k, v in want.items() if k in tensors and tensors[k].shape != v.shape]
    kinds = [f"{k} ({tensors[k].dtype} in the file, {v.dtype} in the model)" for k, v in want.items()
             if k in tensors and v.is_floating_point() and not tensors[k].is_floating_point()]
    bad = [k for k, t in tensors.items() if k in want and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    tied = [] if shapes or kinds else _tied_disagreements(want, tensors)
    found = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes),
                         ("dtype mismatches", kinds), ("non-finite values in", bad),
                         ("tied entries (one tensor in the model) with different values in the file", tied)):
        if items:
            found.append(f"{label} ({len(items)}): {_listed(items)}")
    return found


def _tied_disagreements(want: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Entries that are one tensor in the model (tied weights) but differ in the file: loading would keep
    whichever came last, silently."""
    groups: dict[tuple, list[str]] = {}
    for k, v in want.items():
        if k in tensors and v.numel():
            groups.setdefault((v.data_ptr(), tuple(v.shape), tuple(v.stride())), []).append(k)
    out = []
    for names in groups.values():
        first = tensors[names[0]]
        out.extend(f"{names[0]} = {n}" for n in names[1:] if not torch.equal(tensors[n], first))
    return out


def load_into(model: nn.Module, ckpt: Checkpoint, what: str = "the model") -> None:
    """Copy the checkpoint into `model` (cast to its dtypes), after a strict check of every key and shape."""
    found = mismatches(model, ckpt.tensors)
    if found:
        raise InputError(KEY, f"{ckpt.given!r} does not fit {what} ({type(model).__name__}, "
                         f"{len(model.state_dict())} entries in its state_dict): " + "; ".join(found))
    try:
        with torch.no_grad():
            model.load_state_dict(dict(ckpt.tensors), strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:  # a custom _load_from_state_dict that refuses
        raise InputError(KEY, f"loading {ckpt.given!r} into {what} failed: {_first_line(exc)}") from None


def load_checkpoint(model: nn.Module, given: str, source_dir: str, what: str = "the model") -> Checkpoint:
    """Read `given` and load it into `model`: the Checkpoint that was loaded (for the report)."""
    ckpt = read_checkpoint(given, source_dir)
    load_into(model, ckpt, what)
    return ckpt
