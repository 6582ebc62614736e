"""Probe sets (issue 18 item 3): rank(G) on the training set, on other inputs and on both.

`analysis.probe` is 0 (off), a count (that many inputs drawn from the training distribution and not in the
training set where the data set is finite), or a file (.npz with an array `x`, .npy, or a .csv whose last
column is a label, as data.path). G is a function of the inputs only, so no targets are needed.

Reported: rank_train = rank(G) (the spectrum stage's), rank_probe = rank(G_probe), rank_both =
rank([G G_probe]), each by the project's rule σ > σ₁·max(N, columns)·ε (or analysis.rtol·σ₁), and
flat_on_both = N − rank_both: how many of the N − rank_train directions flat to first order on the training
set are flat on the probe set too. A behaviour level set only constrains the inputs it was computed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...config import IMAGE_SHAPE, Preset, resolve_path
from ..errors import InputError
from ..numerics import spectrum
from ..problem import data as data_mod

PROBE_SEED = 918_273  # added to the preset's seed for the probe draw (the training draw uses the seed itself)
DIGITS_TOTAL = 1797


@dataclass
class ProbeResult:
    source: str  # words: where the probe inputs came from
    n_probe: int
    n_params: int
    rank_train: int
    rank_probe: int
    rank_both: int
    flat_on_train: int
    flat_on_both: int
    tolerance_probe: float
    tolerance_both: float
    near_threshold: int  # singular values of [G G_probe] within the near factor of its tolerance
    meaning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "n_probe": self.n_probe, "n_params": self.n_params,
                "rank_train": self.rank_train, "rank_probe": self.rank_probe, "rank_both": self.rank_both,
                "flat_on_train": self.flat_on_train, "flat_on_both": self.flat_on_both,
                "tolerance_probe": self.tolerance_probe, "tolerance_both": self.tolerance_both,
                "near_threshold": self.near_threshold, "meaning": self.meaning}


# --------------------------------------------------------------------------- the probe inputs


def probe_inputs(preset: Preset, inputs: data_mod.Inputs) -> tuple[np.ndarray, str]:
    """The probe inputs (shaped like the training inputs) and where they came from, in words."""
    setting = preset.analysis.probe
    if isinstance(setting, str):
        return read_file(setting, preset.source_dir, inputs.x)
    return draw(preset, inputs, int(setting)), f"{setting} inputs drawn from the training distribution"


def read_file(given: str, source_dir: str, like: np.ndarray) -> tuple[np.ndarray, str]:
    path = resolve_path(given, source_dir)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            x = data_mod._load_file(Path(path))[0]
        else:
            with np.load(path, allow_pickle=False) as z:
                x = np.asarray(z["x"] if suffix == ".npz" else z)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError("analysis.probe", f"{given}: cannot read probe inputs ({exc}); a .npz with an array x, "
                         "a .npy, or a .csv with a label in its last column") from None
    return _shaped(x, like, given), f"{len(x)} inputs read from {given}"


def _shaped(x: np.ndarray, like: np.ndarray, given: str) -> np.ndarray:
    if x.ndim < 1 or len(x) == 0 or x[0].size != like[0].size:
        raise InputError("analysis.probe", f"{given}: {x.shape} is not a list of inputs of "
                         f"{like[0].size} values each (the training inputs are {like.shape[1:]})")
    x = x.reshape((len(x), *like.shape[1:]))
    if not np.all(np.isfinite(x.astype(np.float64))):
        raise InputError("analysis.probe", f"{given}: the probe inputs hold nan or inf")
    return x.astype(like.dtype)


def draw(preset: Preset, inputs: data_mod.Inputs, count: int) -> np.ndarray:
    """`count` new inputs from the training data's distribution (others than the training inputs where the
    data set is finite: digits, parity, modular, a file's further rows)."""
    d = preset.data
    rng = np.random.default_rng(preset.seed + PROBE_SEED)
    n = d.n if d.n is not None else data_mod.DEFAULT_N
    drawer = _DRAWERS[d.kind]
    return drawer(preset, inputs, n, count, rng)


def _gaussian(preset, inputs, n, count, rng):
    d = preset.data
    dim = d.dim if d.dim is not None else data_mod.DEFAULT_DIM["gaussian"]
    r = d.rank if d.rank is not None else min(n, dim)
    again = np.random.default_rng(preset.seed)  # the training draw's own order: z, then the basis
    again.standard_normal((n, r))
    basis = np.linalg.qr(again.standard_normal((dim, r)))[0].T
    return rng.standard_normal((count, r)) @ basis


def _xor(preset, inputs, n, count, rng):
    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    return corners[rng.integers(0, 4, size=count)] + 0.1 * rng.standard_normal((count, 2))


def _sklearn_2d(preset, inputs, n, count, rng):
    from sklearn.datasets import make_circles, make_moons

    maker = make_moons if preset.data.kind == "moons" else make_circles
    kwargs = {"noise": 0.1} if preset.data.kind == "moons" else {"noise": 0.05, "factor": 0.5}
    return maker(n_samples=count, random_state=preset.seed + PROBE_SEED, **kwargs)[0]


def _others(taken: np.ndarray, total: int, count: int, rng, what: str) -> np.ndarray:
    rest = np.setdiff1d(np.arange(total), taken)
    if count > len(rest):
        raise InputError("analysis.probe", f"{count} probe inputs asked for, but only {len(rest)} {what} are not "
                         "in the training set; ask for fewer, or give a file")
    return np.sort(rng.choice(rest, size=count, replace=False))


def _parity(preset, inputs, n, count, rng):
    dim = inputs.x.shape[1]
    taken = (((inputs.x + 1) / 2).astype(np.int64) << np.arange(dim)).sum(axis=1)
    codes = _others(taken, 2**dim, count, rng, f"bit strings of {dim} bits")
    return ((codes[:, None] >> np.arange(dim)[None, :]) & 1).astype(np.float64) * 2 - 1


def _sine(preset, inputs, n, count, rng):
    return rng.uniform(-np.pi, np.pi, size=(count, inputs.x.shape[1]))


def _digits(preset, inputs, n, count, rng):
    from sklearn.datasets import load_digits

    digits = load_digits()
    taken = np.sort(np.random.default_rng(preset.seed).choice(len(digits.target), size=n, replace=False))
    idx = _others(taken, len(digits.target), count, rng, "digits images")
    x = digits.data[idx].astype(np.float64) / 16.0
    return x.reshape(count, *IMAGE_SHAPE) if preset.data.layout == "image" else x


def _modular(preset, inputs, n, count, rng):
    p = preset.data.p if preset.data.p is not None else data_mod.DEFAULT_P
    taken = inputs.x[:, 0] * p + inputs.x[:, 1]
    idx = _others(taken, p * p, count, rng, f"pairs of the {p * p}")
    return np.stack([idx // p, idx % p], axis=1).astype(np.int64)


def _file(preset, inputs, n, count, rng):
    x = data_mod._load_file(resolve_path(preset.data.path, preset.source_dir))[0]
    used = preset.data.n if preset.data.n is not None else len(x)
    if count > len(x) - used:
        raise InputError("analysis.probe", f"{count} probe inputs asked for, but {preset.data.path} has "
                         f"{len(x) - used} rows beyond the {used} trained on; give a file of probe inputs instead")
    return x[used: used + count]


_DRAWERS = {"gaussian": _gaussian, "xor": _xor, "moons": _sklearn_2d, "circles": _sklearn_2d, "parity": _parity,
            "sine": _sine, "digits": _digits, "modular": _modular, "file": _file}


# --------------------------------------------------------------------------- the ranks


def ranks(G: torch.Tensor, G_probe: torch.Tensor, rank_train: int, rtol: float, source: str,
          cancel=None) -> ProbeResult:
    """rank(G_probe) and rank([G G_probe]) by the project's rule, beside rank_train."""
    n = G.shape[0]
    sp = spectrum.spectrum_of(G_probe, rtol=rtol, cancel=cancel)
    both = spectrum.spectrum_of(torch.cat([G, G_probe], dim=1), rtol=rtol, cancel=cancel)
    out = ProbeResult(source, G_probe.shape[1], n, rank_train, sp.rank, both.rank, n - rank_train, n - both.rank,
                      sp.tolerance, both.tolerance, both.near_threshold)
    out.meaning = _meaning(out)
    return out


def _meaning(r: ProbeResult) -> list[str]:
    lost = r.flat_on_train - r.flat_on_both
    first = (f"Of the {r.flat_on_train} directions flat to first order on the training set, {r.flat_on_both} stay "
             f"flat on the probe set too ({lost} are not): rank {r.rank_train} on the training set, {r.rank_probe} "
             f"on the probe set, {r.rank_both} on both.")
    lines = [first]
    if lost:
        lines.append("A behaviour level set constrains only the inputs it was computed on: the directions that "
                     "stop being flat change the network's outputs on the probe inputs.")
    if r.near_threshold:
        lines.append(f"{r.near_threshold} singular values of [G G_probe] sit near its tolerance: rank_both hangs "
                     "on rounding there.")
    return lines


def analyse(ctx, report) -> ProbeResult:
    """The session's stage: the probe inputs, G on them, the ranks."""
    from .. import memory
    from ..routes import jacobian

    x, source = probe_inputs(ctx.preset, ctx.inputs)
    xt = torch.as_tensor(x, device=ctx.device).to(torch.float64)  # tokens too, as the training inputs
    kd = len(x) * ctx.out_dim + ctx.x.shape[0] * ctx.out_dim
    memory.check_fits("analysis.probe", f"[G G_probe] ({ctx.layout.n_params} × {kd})", 2 * 8 * ctx.layout.n_params * kd,
                      ctx.device, "ask for fewer probe inputs (analysis.probe)")
    G_probe, _ = jacobian.compute_G(ctx.model, ctx.layout, xt, transform=ctx.transform, cancel=ctx.cancel)
    return ranks(ctx.G, G_probe, ctx.spectrum.rank, ctx.preset.analysis.rtol, source, ctx.cancel)
