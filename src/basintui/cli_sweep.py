"""`basintui sweep PRESET --grid KEY=[…] --seeds N --out DIR`: many runs of one preset, each exactly what
`basintui run PRESET --set KEY=VALUE --set seed=S` does, on a local process pool (default) or a Dask
cluster (`--dask ADDRESS`, `--dask local`). Every finished run is a line of DIR/runs.jsonl as it finishes;
at the end DIR/summary.csv, DIR/sweep.json and a plot of the fraction rank-deficient against N/(k·d).

Exit codes: 0 every run ok, 1 some run failed (recorded, the files are written), 2 a bad grid, preset or
output directory (every offending point listed, nothing run), 130 interrupted (the runs in flight are
cancelled and recorded, the files complete).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Self

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser(
        "sweep", help="run a preset over a grid of settings and seeds; the fraction rank-deficient per point",
        description="Run PRESET once per grid point and seed, each run exactly as `basintui run` would, and "
                    "report per point the fraction of runs whose G (and Hessian, by the Weyl count) is "
                    "rank-deficient, with 95%% Wilson intervals, against N/(k·d).")
    s.add_argument("preset", metavar="PRESET", help="a .toml file or the name of a built-in preset")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=TOML_ARRAY",
                   help="a preset key and the values to sweep, e.g. --grid model.hidden=[[2],[4],[8]] "
                        "(repeatable: the cartesian product)")
    s.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds 0…N−1 per point (default 1)")
    s.add_argument("--seed-list", metavar="S1,S2,…", help="these seeds instead of 0…N−1")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset key in every run (as in `basintui run`)")
    s.add_argument("--out", required=True, metavar="DIR", help="the directory for runs.jsonl, summary.csv, sweep.json")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: the usable cores; with --dask local, the cluster's workers)")
    s.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="cancel a run after this long; it is retried once, then recorded as failed")
    s.add_argument("--resume", action="store_true", help="run only the (point, seed) pairs missing from DIR/runs.jsonl")
    s.add_argument("--keep-reports", action="store_true", help="write each run's full report to DIR/reports/")
    s.add_argument("--dask", metavar="ADDRESS", help="submit the runs to this dask.distributed scheduler "
                   "(tcp://HOST:8786), or `local` for a LocalCluster; needs basintui[dask]")
    s.add_argument("--quiet", "-q", action="store_true", help="no plot or table on stdout")
    s.set_defaults(handler=cmd_sweep)


def _err(msg: str) -> None:
    sys.stderr.write(f"basintui: error: {msg}\n")


def _prepare(args):
    """(source, grid, seeds, checked points, journal), or an exit code after saying what is wrong."""
    from .config import PresetError
    from .sweep.grid import (
        GridError,
        check_points,
        parse_grid,
        parse_seeds,
        point_label,
        preset_source,
    )
    from .sweep.journal import Journal
    from .sweep.pool import usable_cores

    if args.workers is not None and args.workers < 1:
        _err(f"--workers {args.workers}: at least 1")
        return EXIT_USAGE
    if args.seeds is not None and args.seed_list is not None:
        _err(f"--seeds {args.seeds} and --seed-list {args.seed_list}: give one of them")
        return EXIT_USAGE
    if args.timeout is not None and not args.timeout > 0:
        _err(f"--timeout {args.timeout}: a positive number of seconds")
        return EXIT_USAGE
    try:
        grid = parse_grid(args.grid)
        seeds = parse_seeds(args.seeds if args.seeds is not None else (None if args.seed_list else 1),
                            args.seed_list)
        source = preset_source(args.preset)
    except (GridError, PresetError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        _err(f"--out {args.out}: is not a directory")
        return EXIT_USAGE
    journal = Journal(out)
    if journal.exists() and not args.resume:
        _err(f"--out {args.out}: {journal.path} already holds runs; add --resume to run only the missing ones, "
             "or give another directory")
        return EXIT_USAGE
    checked = check_points(source, args.sets, grid, seeds[0], args.workers or usable_cores())
    if checked.offending:
        _err(f"{len(checked.offending)} of {len(grid.points())} grid points cannot be run; nothing was started:")
        for o in checked.offending:
            sys.stderr.write(f"  {point_label(o.point)}: {o.why}\n")
        return EXIT_USAGE
    return source, grid, seeds, checked.points, journal


def _tasks(args, source, points, seeds, done):
    from .sweep.journal import pair
    from .sweep.task import Task

    out = []
    for i, point in enumerate(points):
        for seed in seeds:
            if pair(point, seed) in done:
                continue
            keep = str(Path(args.out).expanduser().resolve() / "reports" / f"p{i:04d}-s{seed}.json") \
                if args.keep_reports else None
            out.append(Task(preset=source, sets=tuple(args.sets), point=point, seed=seed, timeout=args.timeout,
                            report_path=keep))
    return out


def _backend(args):
    from .sweep.pool import Pool, usable_cores

    if not args.dask:
        return Pool(args.workers), "local pool"
    from .sweep.dask_backend import DaskBackend, connect

    client, cluster = connect(args.dask, args.workers or usable_cores())
    return DaskBackend(client, cluster), f"dask {args.dask}"


class _Stop:
    """SIGINT/SIGTERM: the first sets `stop` (the runs in flight are cancelled and recorded); a second
    ends the process at once (the journal already holds every finished run)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame) -> None:
        if self.stop.is_set():
            os.write(2, b"\nbasintui: error: interrupted again; the journal holds every finished run\n")
            os._exit(EXIT_INTERRUPT)
        self.stop.set()
        sys.stderr.write("\nbasintui: cancelling the runs in flight (again to stop at once)...\n")
        sys.stderr.flush()


def cmd_sweep(args: argparse.Namespace) -> int:
    prepared = _prepare(args)
    if isinstance(prepared, int):
        return prepared
    source, grid, seeds, points, journal = prepared
    why = _resume_mismatch(args, source)
    if why:
        _err(why)
        return EXIT_USAGE
    try:  # the summary is there from the start, so a killed sweep leaves it (and --resume can check it)
        Path(args.out).expanduser().mkdir(parents=True, exist_ok=True)
        _write_summary(args, source, grid, seeds, points, journal, "not started")
    except OSError as exc:
        _err(f"--out {args.out}: cannot write there ({exc.strerror or exc})")
        return EXIT_USAGE
    tasks = _tasks(args, source, points, seeds, journal.done() if args.resume else set())
    from .sweep.dask_backend import DaskUnavailable

    with _Stop() as stopper:
        try:
            backend, name = _backend(args)
        except DaskUnavailable as exc:
            _err(str(exc))
            return EXIT_USAGE
        outcome = _run(tasks, backend, journal, stopper.stop)
    return _finish(args, source, grid, seeds, points, journal, name, outcome)


def _resume_mismatch(args, source) -> str | None:
    """Why --resume cannot continue the sweep in --out (another preset or other --set items), or None."""
    import msgspec

    from .schema.sweep import decode_summary

    path = Path(args.out).expanduser() / "sweep.json"
    if not args.resume or not path.exists():
        return None
    try:
        old = decode_summary(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        return f"--resume: {path} cannot be read ({exc}); give another --out"
    if old.preset != source or list(old.sets) != list(args.sets):
        return (f"--resume: {path} is a sweep of {old.preset} with --set {old.sets or '(none)'}, not of {source} with "
                f"--set {list(args.sets) or '(none)'}; resume with the same preset and --set items, or give another --out")
    return None


def _write_summary(args, source, grid, seeds, points, journal, backend_name):
    from .sweep.summary import summarise, write

    summary = summarise(journal.rows(), points, seeds, preset=source, sets=args.sets, grid=grid,
                        backend=backend_name)
    return summary, write(summary, Path(args.out).expanduser())


def _run(tasks, backend, journal, stop):
    from .render.sweep import ProgressLine
    from .sweep.driver import drive

    progress = ProgressLine(len(tasks), sys.stderr)
    try:
        with journal:
            if hasattr(backend, "__enter__"):
                backend.__enter__()
            return drive(tasks, backend, journal, stop, lambda row: progress.update(row.status == "failed"))
    finally:
        progress.close()
        close = getattr(backend, "close", None)
        if close is not None:
            close()


def _finish(args, source, grid, seeds, points, journal, backend_name, outcome) -> int:
    from .render.sweep import plot, table

    try:
        summary, written = _write_summary(args, source, grid, seeds, points, journal, backend_name)
    except OSError as exc:
        _err(f"cannot write the summary: {exc}")
        return EXIT_FAIL
    if not args.quiet:
        sys.stdout.write(plot(summary) + "\n\n" + table(summary) + "\n")
        sys.stdout.flush()
    for path in [journal.path, *written]:
        sys.stderr.write(f"wrote {path}\n")
    if outcome.cancelled:
        _err("interrupted; the runs in flight were cancelled and recorded, the files are complete "
             "(--resume runs the rest)")
        return EXIT_INTERRUPT
    failed = sum(p.failed for p in summary.points)
    if failed:
        _err(f"{failed} run(s) failed after a retry; their reasons are in {journal.path}")
        return EXIT_FAIL
    return EXIT_OK
