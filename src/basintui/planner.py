"""The one planner: what a run will compute (G's route, the Hessian mode), the memory it needs and how
long its arithmetic takes, decided once, without torch.

The Setup pane and the CLI plan from the preset alone (`sizes_from_preset`); the engine plans from the
sizes of the model it built (`engine/session/resources.plan` measures the memory and the float64
matrix-multiply rate on the device, then calls `plan`). Both get the same `schema.plan.Plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import (DEFAULT_DIM, DEFAULT_N, DEFAULT_P, IMAGE_SHAPE, NATURAL_DIM, TOKEN_POSITIONS, ZOO_KINDS, ModelConfig,
                     Preset, modular_pairs, zoo_layernorm)
from .limits import (
    DENSE_HESSIAN_MAX_PARAMS,
    SAFETY,
    choose_route,
    fmt_bytes,
    forward_pass_bytes,
    hessian_bytes,
    host_available_bytes,
    mlp_shape,
    model_state_bytes,
)
from .schema.plan import Plan

LABEL_CLASSES = {"xor": 2, "moons": 2, "circles": 2, "parity": 2, "digits": 10}  # the synthetic kinds' classes


@dataclass(frozen=True)
class Sizes:
    """What the plan depends on: N, k, d and the memory of training, known before anything is allocated."""

    n_params: int
    n_train: int  # k, duplicates included
    out_dim: int  # d
    linear_ok: bool = False  # a network of Linear layers and elementwise activations (the factored route)
    width_sum: int = 0  # Σ (in + out) over its Linear layers
    forward_bytes: int = 0  # a full-batch forward and backward pass (limits.forward_pass_bytes)
    state_bytes: int = 0  # parameters, gradients, optimiser state, teacher (limits.model_state_bytes)

    @property
    def kd(self) -> int:
        return self.n_train * self.out_dim


@dataclass(frozen=True)
class Unknown:
    """Sizes only the run can measure (a data file, a model factory): what is known, and why the rest is not."""

    why: str
    n_params: int | None = None
    n_train: int | None = None
    out_dim: int | None = None


def train_count(preset: Preset) -> int | None:
    """k, the number of training inputs the run will make (None for a file: known once it is read)."""
    d = preset.data
    if d.kind == "file":
        return None
    if d.kind == "modular":
        return modular_pairs(_modulus(preset), 1.0 if d.train_fraction is None else d.train_fraction) + d.duplicates
    return (d.n if d.n is not None else DEFAULT_N) + d.duplicates


def _modulus(preset: Preset) -> int:
    return preset.data.p if preset.data.p is not None else DEFAULT_P


def input_dim(preset: Preset) -> int | None:
    """The inputs' dimension (None for a file)."""
    d = preset.data
    if d.kind == "file":
        return None
    return NATURAL_DIM.get(d.kind) or (d.dim if d.dim is not None else DEFAULT_DIM.get(d.kind, 2))


def output_dim(preset: Preset) -> int | None:
    """d, as engine/problem/data.out_dim_for will find it (None when it comes from a file's labels)."""
    d = preset.data
    if d.targets != "labels":
        return d.out_dim
    classes = _modulus(preset) if d.kind == "modular" else LABEL_CLASSES.get(d.kind)
    if classes:
        return classes if (preset.train.loss == "ce" or (preset.train.loss == "mse" and classes > 2)) else 1
    return 1 if d.kind == "sine" else None


def sizes_from_preset(preset: Preset) -> Sizes | Unknown:
    """The sizes the engine will measure, from the config only (no torch, no data loaded), or what is
    known and why the rest is not."""
    k, in_dim, d = train_count(preset), input_dim(preset), output_dim(preset)
    why = []
    if preset.data.kind == "file":
        why.append("k comes from the data file")
    if d is None:
        why.append("d comes from the file's labels")
    m = preset.model
    if m.kind == "python":
        why.append("N comes from the model factory")
    n_params = None
    if m.kind == "mlp" and in_dim is not None and d is not None:
        shape = mlp_shape(in_dim, m.hidden, d, m.bias, m.activation)
        n_params = shape.n_params
    elif m.kind in ZOO_KINDS and in_dim is not None and d is not None:
        n_params, per_input = zoo_params(m, in_dim, d)
    if why or n_params is None or k is None or d is None:
        return Unknown("; ".join(why) or "the sizes come from the run", n_params, k, d)
    elem = 8 if preset.dtype == "float64" else 4
    if m.kind in ZOO_KINDS:  # not a chain of Linear layers: no factored route
        return Sizes(n_params, k, d, forward_bytes=forward_pass_bytes(k, per_input, elem),
                     state_bytes=model_state_bytes(n_params, elem, preset.train.optimizer,
                                                   teacher=preset.data.targets == "teacher"))
    return Sizes(n_params, k, d, linear_ok=True, width_sum=shape.width_sum,
                 forward_bytes=forward_pass_bytes(k, shape.per_input, elem),
                 state_bytes=model_state_bytes(n_params, elem, preset.train.optimizer,
                                               teacher=preset.data.targets == "teacher"))


def zoo_params(m: ModelConfig, in_dim: int, d: int) -> tuple[int, int]:
    """N and the numbers the leaf modules output per input for the built-in cnn, transformer and resmlp
    (engine/problem/zoo.py builds them; tests/test_zoo.py checks N against the built model). `in_dim` is
    the resmlp's input width; the cnn takes IMAGE_SHAPE, the transformer d = p tokens."""
    b, ln = int(m.bias), 2 * zoo_layernorm(m)  # a LayerNorm has a weight and a bias per feature
    if m.kind == "cnn":
        c, h, w = IMAGE_SHAPE
        n = 0
        for ch in m.hidden:
            n, c = n + c * ch * 9 + b * ch, ch
        return n + c * h * w * d + b * d, 2 * sum(m.hidden) * h * w + d
    if m.kind == "transformer":
        (w, inner), t = m.hidden, TOKEN_POSITIONS
        n = d * w + t * w + 3 * ln * w + 4 * (w * w + b * w) + (w * inner + b * inner + inner * w + b * w) + w * d + b * d
        return n, t * (2 * w + 3 * w + 4 * w + 2 * inner + w + 2 * t) + d
    if m.kind == "resmlp":
        w, depth = m.hidden[0], len(m.hidden)
        n = in_dim * w + b * w + depth * (ln * w + w * w + b * w) + ln * w + w * d + b * d
        return n, w + depth * 3 * w + w + d
    raise ValueError(f"not a built-in architecture: {m.kind}")  # pragma: no cover - the callers check


def plan(preset: Preset, sizes: Sizes | Unknown, available_bytes: int, gflops: float | None = None) -> Plan:
    """The route to G's spectrum (limits.choose_route: the cheapest that fits in SAFETY × available), the
    Hessian mode (`auto` resolved by choose_hessian_mode), their memory, and the time the route's
    arithmetic takes at `gflops` (a measured float64 rate; no estimate without one)."""
    if isinstance(sizes, Unknown):
        return Plan(known=False, why_unknown=sizes.why, n_params=sizes.n_params, n_train=sizes.n_train,
                    out_dim=sizes.out_dim, available_bytes=int(available_bytes), state_key=_state_key(preset),
                    hessian_mode=None if preset.analysis.hessian == "auto" else preset.analysis.hessian)
    n, kd, a = sizes.n_params, sizes.kd, preset.analysis
    g = 8 * n * kd
    route = choose_route(n, kd, sizes.linear_ok, SAFETY * available_bytes, width_sum=sizes.width_sum,
                         forward_bytes=sizes.forward_bytes, top_k=a.top_k, force=a.route)
    seconds = route.flops / gflops / 1e9 if gflops and route.flops > 0 else None
    notes = [f"spectrum route: {route.why}" + time_words(route.flops, gflops)]
    skipped = stages_needing_G(preset)
    if not route.g_fits and skipped:
        notes.append(f"G ({fmt_bytes(g)}) will not fit, so the stages that need it "
                     f"({', '.join(skipped)}) are skipped; set them off to silence this")
    mode, hessian_why = choose_hessian_mode(a.hessian, n, available_bytes, route.peak_bytes)
    if hessian_why and route.g_fits:
        notes.append(hessian_why)
    stage_s = stage_seconds(preset, sizes, route.flops, mode, gflops) if gflops else {}
    return Plan(n_params=n, n_train=sizes.n_train, out_dim=sizes.out_dim, kd=kd, linear_ok=sizes.linear_ok,
                route=route.route, route_why=route.why, route_key=route.key, g_fits=route.g_fits,
                hessian_mode=mode, hessian_why=hessian_why, g_bytes=g, peak_bytes=route.peak_bytes,
                hessian_bytes=hessian_bytes(n) if mode == "dense" else 0, state_bytes=sizes.state_bytes,
                state_key=_state_key(preset), forward_bytes=sizes.forward_bytes, available_bytes=int(available_bytes),
                flops=route.flops, gflops=gflops, seconds=seconds, stage_seconds=stage_s, notes=notes)


# Rough shares of the measured float64 matrix-multiply rate that each kind of work reaches (2-core CPU,
# digits and default presets): batched products run near it, decompositions (SVD, eigvalsh, QR) well below.
DECOMPOSITION_SHARE = 0.3
AUTOGRAD_SHARE = 0.1  # per-sample gradients: many small products
HVP_SHARE = 0.25  # Hessian-vector products, vmapped over a block of columns
TRAIN_STEP_OVERHEAD_S = 1e-3  # an optimiser step's fixed cost (autograd, the optimiser's update)
LANCZOS_PRODUCTS = 360  # Hessian-vector products of the Lanczos mode's ARPACK runs (extremes and ‖H − GGN‖₂)
SLQ_PRODUCTS = 4 * 64  # … and of its density (the engine's default probes × steps)


def hessian_phases(n: int, k: int, kd: int, loss: str, mode: str, slq_products: int = SLQ_PRODUCTS
                   ) -> dict[str, float]:
    """The Hessian stage's phases in order and their arithmetic, in float64 matrix-multiply flop
    equivalents (divide by the measured rate for seconds): G·Q^½'s singular values (none for mse, whose
    Q = 2I reuses the spectrum's), then the N columns, GGN and eigvalsh(H), eigvalsh(H − GGN) (dense), or
    the extreme eigenvalues, ‖H − GGN‖₂ and the density (Lanczos). The engine weighs its progress by them."""
    small, large = min(n, kd), max(n, kd)
    hvp = 24.0 * n * k / HVP_SHARE  # one product over the k inputs (forward-over-reverse)
    if mode == "dense":
        ggn = 4.0 * large * small**2 / DECOMPOSITION_SHARE if loss != "mse" else 0.0
        eig = 4.0 / 3.0 * n**3 / DECOMPOSITION_SHARE
        return {"ggn": ggn, "columns": n * hvp, "eig_H": 2.0 * n * n * kd + eig, "eig_residual": eig}
    gram = (float(small) ** 2 * large + float(small) ** 3) / DECOMPOSITION_SHARE if loss != "mse" else 0.0
    return {"ggn": gram, "extremes": 0.85 * LANCZOS_PRODUCTS * hvp, "residual": 0.15 * LANCZOS_PRODUCTS * hvp,
            "density": slq_products * hvp}


def stage_seconds(preset: Preset, sizes: Sizes, route_flops: float, hessian_mode: str, gflops: float
                  ) -> dict[str, float]:
    """Each stage's seconds at `gflops` (the measured float64 rate), from its dominant arithmetic: a first
    guess for the progress display, which replaces it with the measured rate as soon as a stage runs.
    The data and level-set stages are not estimated."""
    n, k, kd, a = sizes.n_params, sizes.n_train, sizes.kd, preset.analysis
    rate = gflops * 1e9
    small, large = min(n, kd), max(n, kd)
    svd = 4.0 * large * small**2 / (rate * DECOMPOSITION_SHARE)  # all singular values of an N × kd matrix
    batch = preset.train.batch_size or k
    out = {"train": preset.train.steps * (6.0 * n * batch / rate + TRAIN_STEP_OVERHEAD_S),
           "jacobian": 6.0 * n * kd / (rate * AUTOGRAD_SHARE),
           "spectrum": route_flops / (rate * DECOMPOSITION_SHARE)}
    if a.hessian != "off" and hessian_mode in ("dense", "lanczos"):
        out["hessian"] = sum(hessian_phases(n, k, kd, preset.train.loss, hessian_mode).values()) / rate
    if a.layers:
        out["layers"] = 2 * svd  # the blocks' ranks and G's R factor
    out.update(beyond_seconds(preset, sizes, rate))
    return out


SLICE_POINTS = 21 * 21  # the loss slice's grid (engine/session/beyond.SLICE_SIZE²)
POWER_ITERS = 30  # the LLC's power iteration for its automatic step (engine/analyses/llc.POWER_ITERS)
LLC_STEP_OVERHEAD_S = 0.01  # one chain's SGLD step beyond its arithmetic (measured ~0.03 s on default, loaded 2-core box)
SLICE_POINT_OVERHEAD_S = 1e-3  # one grid point of the slice beyond its arithmetic (measured ~1 ms on default)


def beyond_seconds(preset: Preset, sizes: Sizes, rate: float) -> dict[str, float]:
    """The stages beyond the rank (issue 18), each from its dominant arithmetic at `rate` flop/s: symmetry
    (Gᵀ times an orthonormal basis of the tangents and dead coordinates, and that basis), soft (a sum over
    the eigenvalues per grid point), probe (G on the probe inputs and the singular values of [G G_probe]),
    llc (chains × steps full-batch gradients, and the power iteration) and slices (N × N left singular
    vectors of G, and 441 loss evaluations)."""
    n, k, kd, a = sizes.n_params, sizes.n_train, sizes.kd, preset.analysis
    grad = 6.0 * n * k / (rate * AUTOGRAD_SHARE)  # one full-batch forward and backward pass
    out: dict[str, float] = {}
    if a.symmetry:
        m = min(n, max(sizes.width_sum, 1))
        out["symmetry"] = (4.0 * n * kd * m + 8.0 * n * m * m) / (rate * DECOMPOSITION_SHARE)
    if a.soft:
        out["soft"] = 100.0 * min(n, kd) / rate
    if a.probe:
        kp = (a.probe if isinstance(a.probe, int) else k) * sizes.out_dim
        small, large = min(n, kd + kp), max(n, kd + kp)
        out["probe"] = 6.0 * n * kp / (rate * AUTOGRAD_SHARE) + 4.0 * large * small**2 / (rate * DECOMPOSITION_SHARE)
    if a.llc:
        c = preset.llc
        out["llc"] = (c.chains * (c.burnin + c.draws) + 2 * POWER_ITERS) * grad + \
            c.chains * (c.burnin + c.draws) * LLC_STEP_OVERHEAD_S
    if a.slices:
        out["slices"] = 4.0 * n * n * kd / (rate * DECOMPOSITION_SHARE) + SLICE_POINTS * (grad / 3 + SLICE_POINT_OVERHEAD_S)
    return out


def beyond_words(stage_s: dict[str, float]) -> str:
    """'beyond the rank: symmetry ~0.1 s, llc ~12 s' for the stages of issue 18 that are on ('' when none):
    the session's note when the run starts (the plan itself stays free of the measured rate's words)."""
    parts = [f"{name} ~{stage_s[name]:.2g} s" for name in ("symmetry", "soft", "probe", "llc", "slices")
             if name in stage_s]
    return ("beyond the rank: " + ", ".join(parts)) if parts else ""


def plan_preset(preset: Preset, available_bytes: int | None = None) -> Plan:
    """The plan from the preset alone (the Setup pane, the CLI): host memory unless told, no time estimate."""
    avail = host_available_bytes() if available_bytes is None else available_bytes
    return plan(preset, sizes_from_preset(preset), avail)


def choose_hessian_mode(mode: str, n_params: int, available: int, peak: int = 0) -> tuple[str, str]:
    """`auto` → dense for N ≤ DENSE_HESSIAN_MAX_PARAMS when it fits in memory beside the spectrum's peak,
    else lanczos; the second value says which was picked and why ("" when the mode was asked for)."""
    if mode != "auto":
        return mode, ""
    hb = hessian_bytes(n_params)
    if n_params > DENSE_HESSIAN_MAX_PARAMS:
        return "lanczos", (f"hessian = auto: lanczos (N = {n_params} > {DENSE_HESSIAN_MAX_PARAMS}; a dense "
                           f"Hessian would need {fmt_bytes(hb)})")
    if hb > SAFETY * available - peak:
        return "lanczos", (f"hessian = auto: lanczos, because a dense Hessian for N = {n_params} needs about "
                           f"{fmt_bytes(hb)} and only {fmt_bytes(available)} is available")
    return "dense", (f"hessian = auto: dense (N = {n_params} ≤ {DENSE_HESSIAN_MAX_PARAMS}; needs about "
                     f"{fmt_bytes(hb)})")


def stages_needing_G(preset: Preset) -> list[str]:
    """The preset keys of the stages after the spectrum that are on (each needs G itself)."""
    a = preset.analysis
    return [name for name, on in (("analysis.hessian", a.hessian != "off"), ("analysis.layers", a.layers),
                                  ("analysis.levelset", a.levelset), ("analysis.symmetry", a.symmetry),
                                  ("analysis.probe", bool(a.probe)), ("analysis.slices", a.slices)) if on]


def time_words(flops: float, gflops: float | None) -> str:
    """'; its arithmetic (~… GFLOP) takes about … s at the … GFLOP/s measured now', or '' without a rate."""
    if flops <= 0 or not gflops:
        return ""
    seconds = flops / gflops / 1e9
    when = "under 0.1 s" if seconds < 0.1 else f"about {seconds:.2g} s"
    return f"; its arithmetic (~{flops / 1e9:.3g} GFLOP) takes {when} at the {gflops:.0f} GFLOP/s measured now"


def _state_key(preset: Preset) -> str:
    return "model.hidden" if preset.model.kind == "mlp" else "model.factory"
