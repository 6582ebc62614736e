"""Sweep speed (issue 17, item 6): COUNT small xor-relu runs (TRAIN steps each, widths 2, 4, 8, 16 × seeds)
through `basintui sweep` on the local pool, against the loop a user would write without it, `basintui run`
once per configuration in a shell loop (each pays interpreter and torch start-up). Both are started from
this process, one after the other, on the same configurations.

Prints both wall times, the ratio (goal ≥ 5× on the 2-core box) and the sweep's per-run overhead over the
engine's own time: (workers × wall − Σ engine seconds) / runs, the engine seconds being each report's own
`total` timing.

    .venv/bin/python benchmarks/sweep.py --count 200      # the full measurement
    .venv/bin/python benchmarks/sweep.py --count 8        # a quick check while developing
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = [2, 4, 8, 16]


def basintui() -> list[str]:
    return [sys.executable, "-m", "basintui.cli"]


def naive_loop(count: int, steps: int, out: Path) -> tuple[float, list[dict]]:
    """The shell loop: one `basintui run` per configuration, sequential, each writing its report."""
    lines = []
    for i in range(count):
        width, seed = WIDTHS[i % len(WIDTHS)], i // len(WIDTHS)
        cmd = [*basintui(), "run", "xor-relu", "--set", f"train.steps={steps}", "--set", f"model.hidden=[{width}]",
               "--set", f"seed={seed}", "--json", str(out / f"w{width}-s{seed}.json"), "-q", "--progress", "lines"]
        lines.append(shlex.join(cmd) + " 2>/dev/null")
    script = "\n".join(lines) + "\n"  # as a user's loop: a failed run does not stop the others
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=False, cwd=ROOT)
    wall = time.perf_counter() - t0
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    return wall, reports


def sweep(count: int, steps: int, workers: int, out: Path) -> tuple[float, list[dict]]:
    seeds = -(-count // len(WIDTHS))
    grid = "model.hidden=[" + ", ".join(f"[{w}]" for w in WIDTHS) + "]"
    cmd = [*basintui(), "sweep", "xor-relu", "--set", f"train.steps={steps}", "--grid", grid, "--seeds",
           str(seeds), "--workers", str(workers), "--out", str(out), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=False, cwd=ROOT, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    return wall, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="runs (a multiple of 4; default 200)")
    ap.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    a = ap.parse_args()
    count = a.count - a.count % len(WIDTHS) or len(WIDTHS)
    with tempfile.TemporaryDirectory() as tmp:
        naive_dir, sweep_dir = Path(tmp, "naive"), Path(tmp, "sweep")
        naive_dir.mkdir()
        naive_s, reports = naive_loop(count, a.steps, naive_dir)
        sweep_s, rows = sweep(count, a.steps, a.workers, sweep_dir)
    failed = [r for r in rows if r["status"] != "ok"]
    rows = [r for r in rows if r["status"] == "ok"]
    print(f"reports from the loop: {len(reports)}/{count}; ok rows from the sweep: {len(rows)}/{count}"
          + (f" (first failure: {failed[0]['error']})" if failed else ""))
    naive_ranks = sorted((r["config"]["model"]["hidden"][0], r["config"]["seed"], r["G"]["rank"]) for r in reports)
    sweep_ranks = sorted((r["point"]["model.hidden"][0], r["seed"], r["rank"]) for r in rows)
    engine = sum(r["engine_seconds"] for r in rows) * count / max(len(rows), 1)
    naive_engine = sum(r["timings"]["total"] for r in reports) * count / max(len(reports), 1)
    print(f"runs: {count} xor-relu runs, {a.steps} steps each, widths {WIDTHS}; sweep on {a.workers} workers")
    print(f"naive shell loop (basintui run per config): {naive_s:8.1f} s  ({naive_s / count:.2f} s/run; "
          f"engine's own {naive_engine / count:.3f} s/run)")
    print(f"basintui sweep:                             {sweep_s:8.1f} s  ({sweep_s / count:.3f} s/run)")
    print(f"ratio naive / sweep: {naive_s / sweep_s:.1f}x  (goal >= 5x)")
    print(f"sweep per-run overhead over the engine's own time: "
          f"{(a.workers * sweep_s - engine) / count * 1000:.0f} ms/run (engine {engine / count * 1000:.0f} ms/run, "
          f"{a.workers} x wall {a.workers * sweep_s / count * 1000:.0f} ms/run)")
    same = set(naive_ranks) & set(sweep_ranks)
    print(f"same ranks both ways: {len(same)} of {count} runs agree"
          f"{'' if naive_ranks == sweep_ranks else ' (the rest differ or one side failed)'}")


if __name__ == "__main__":
    main()
