"""The sweep's grid: `--grid KEY=TOML_ARRAY` (repeatable, the cartesian product) × seeds, each point
turned into the `--set` items that `basintui run` would be given, and every point validated before any
run starts (an unknown key, a value of the wrong type, a point the memory guard refuses). Torch-free."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..config import PresetError, find_preset, load_preset, parse_override

MAX_POINTS = 100_000
MAX_SEED = 2**32 - 1


class GridError(ValueError):
    """A grid or seed list that cannot be used; the message names the flag, the value and what is allowed."""


@dataclass(frozen=True)
class Grid:
    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    def points(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, combo)) for combo in itertools.product(*self.values)]

    def as_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in zip(self.keys, self.values)}


def parse_grid(items: list[str]) -> Grid:
    """`KEY=[v1, v2, …]` per item, in TOML syntax; a key may appear once; `seed` is given by --seeds."""
    keys: list[str] = []
    values: list[tuple[Any, ...]] = []
    for item in items:
        try:
            parts, value = parse_override(item)
        except PresetError as exc:
            raise GridError(f"--grid {item}: {exc}") from None
        key = ".".join(parts)
        if key == "seed":
            raise GridError(f"--grid {item}: the seed is swept by --seeds N or --seed-list, not --grid")
        if key in keys:
            raise GridError(f"--grid {item}: {key} is already gridded; give each key once")
        if not isinstance(value, list) or not value:
            raise GridError(f"--grid {item}: {key} needs a non-empty TOML array, e.g. --grid {key}=[1, 2]")
        keys.append(key)
        values.append(tuple(value))
    n = math.prod(len(v) for v in values)
    if n > MAX_POINTS:
        raise GridError(f"--grid: {n} points; at most {MAX_POINTS} are allowed")
    return Grid(tuple(keys), tuple(values))


def parse_seeds(count: int | None, seed_list: str | None) -> list[int]:
    """Seeds 0…N−1 from --seeds N, or the comma-separated --seed-list (distinct integers in [0, 2³² − 1])."""
    if seed_list is not None:
        try:
            seeds = [int(s) for s in seed_list.split(",") if s.strip()]
        except ValueError:
            raise GridError(f"--seed-list {seed_list}: comma-separated integers, e.g. --seed-list 3,7,11") from None
    else:
        if count is None or count < 1 or count > MAX_POINTS:
            raise GridError(f"--seeds {count}: an integer from 1 to {MAX_POINTS}")
        seeds = list(range(count))
    if not seeds:
        raise GridError(f"--seed-list {seed_list}: at least one seed")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise GridError(f"--seed-list: {bad[0]} is not allowed: integers from 0 to {MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise GridError(f"--seed-list {seed_list}: each seed once")
    return seeds


def toml_value(v: Any) -> str:
    """A value as TOML text, for a `--set KEY=VALUE` item (strings as basic strings: JSON's escapes are TOML's)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise GridError(f"a grid value of type {type(v).__name__} cannot be passed to a run")


def point_sets(point: dict[str, Any], seed: int) -> list[str]:
    """The `--set` items a run of this point and seed adds to the sweep's own."""
    return [f"{k}={toml_value(v)}" for k, v in point.items()] + [f"seed={seed}"]


def point_key(point: dict[str, Any]) -> str:
    """A canonical text for a point (its identity in the journal)."""
    return json.dumps(point, sort_keys=True, separators=(",", ":"))


def point_label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={toml_value(v)}" for k, v in point.items()) or "(the preset)"


def preset_source(name_or_path: str) -> str:
    """What a worker is given to load: the absolute path of a preset file, or a built-in preset's name."""
    path = find_preset(name_or_path)  # PresetError when neither
    from ..config import presets_dir

    try:
        if path.resolve().parent == presets_dir().resolve() and path.stem == name_or_path:
            return name_or_path
        return str(path.resolve())
    except OSError:
        return str(path)


@dataclass
class Offending:
    point: dict[str, Any]
    why: str


@dataclass
class Checked:
    points: list[dict[str, Any]] = field(default_factory=list)
    offending: list[Offending] = field(default_factory=list)


def load_run_preset(preset: str, sets: list[str], text: str | None = None, source_dir: str = ""):
    """The preset one run uses: `load_preset(PRESET, sets)` exactly as `basintui run`, or, for a preset that
    lives only in memory (the app's Setup), its TOML `text` read relative to `source_dir` with the same
    overrides applied. PresetError when refused."""
    if text is None:
        return load_preset(preset, list(sets))
    from ..config import apply_overrides, from_dict, parse_toml_text

    raw = apply_overrides(parse_toml_text(text, preset), list(sets))
    raw.setdefault("name", preset)
    return from_dict(raw, source=preset, source_dir=source_dir)


def check_points(preset: str, sets: list[str], grid: Grid, seed: int, workers: int,
                 available_bytes: int | None = None, text: str | None = None, source_dir: str = "") -> Checked:
    """Load every point's preset exactly as `basintui run PRESET --set …` would, and plan it with the memory a
    worker gets (the host's available memory shared by `workers` runs at once): a point whose preset is
    refused, or for which no route to G's spectrum fits, is offending."""
    from ..limits import host_available_bytes
    from ..planner import plan_preset

    avail = host_available_bytes() if available_bytes is None else available_bytes
    share = max(avail // max(workers, 1), 1)
    out = Checked()
    for point in grid.points():
        try:
            p = load_run_preset(preset, list(sets) + point_sets(point, seed), text, source_dir)
        except PresetError as exc:
            out.offending.append(Offending(point, str(exc)))
            continue
        plan = plan_preset(p, share)
        if plan.known and plan.route == "none":
            out.offending.append(Offending(point, f"the memory guard refuses it with {workers} run(s) at once: "
                                                  f"{plan.route_why}"))
            continue
        out.points.append(point)
    return out
