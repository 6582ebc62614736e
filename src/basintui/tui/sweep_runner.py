"""The app's sweep: the same grid check, journal, driver and local pool as `basintui sweep`, run from a
background thread on the preset in Setup (held in memory, so each run gets its TOML text). After every
finished run it calls `on_update(summary, done, total)`, and `on_done(summary, cancelled, error)` at the
end, both from its thread (the pane hands them to the event loop). Textual-free."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Preset, to_toml
from ..schema.sweep import SweepSummary
from ..sweep.driver import drive
from ..sweep.grid import (
    Grid,
    GridError,
    check_points,
    parse_grid,
    parse_seeds,
    point_label,
)
from ..sweep.journal import Journal
from ..sweep.summary import summarise, write
from ..sweep.task import Task

OnUpdate = Callable[[SweepSummary, int, int], None]
OnDone = Callable[[SweepSummary | None, bool, str | None], None]


def default_backend(workers: int | None):
    from ..sweep.pool import Pool

    return Pool(workers, quiet=True)


class SweepRunner:
    def __init__(self, preset: Preset, grid_items: list[str], seeds: int, *, out_dir: str | None = None,
                 workers: int | None = None, backend_factory: Callable[[int | None], Any] = default_backend) -> None:
        """GridError (the message says what is wrong) when the grid, the seeds or any point is refused."""
        self.grid: Grid = parse_grid(grid_items)
        self.seeds = parse_seeds(seeds, None)
        self.name, self.text, self.source_dir = preset.name, to_toml(preset), preset.source_dir
        from ..sweep.pool import usable_cores

        self.workers = workers
        checked = check_points(self.name, [], self.grid, self.seeds[0], workers or usable_cores(), text=self.text,
                               source_dir=self.source_dir)
        if checked.offending:
            raise GridError("; ".join(f"{point_label(o.point)}: {o.why}" for o in checked.offending))
        self.points = checked.points
        self.out = Path(out_dir or tempfile.mkdtemp(prefix="basintui-sweep-"))
        self.backend_factory = backend_factory
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def total(self) -> int:
        return len(self.points) * len(self.seeds)

    def tasks(self) -> list[Task]:
        return [Task(preset=self.name, sets=(), point=p, seed=s, text=self.text, source_dir=self.source_dir)
                for p in self.points for s in self.seeds]

    def summary(self, rows) -> SweepSummary:
        return summarise(rows, self.points, self.seeds, preset=self.name, sets=[], grid=self.grid,
                         backend="local pool (app)")

    def start(self, on_update: OnUpdate, on_done: OnDone) -> None:
        self.thread = threading.Thread(target=self._work, args=(on_update, on_done), name="basintui-sweep",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _work(self, on_update: OnUpdate, on_done: OnDone) -> None:
        journal = Journal(self.out)
        rows: list = []
        backend = None
        try:
            backend = self.backend_factory(self.workers)
            if hasattr(backend, "__enter__"):
                backend.__enter__()

            def row_done(row) -> None:
                rows.append(row)
                on_update(self.summary(rows), len(rows), self.total)

            with journal:
                outcome = drive(self.tasks(), backend, journal, self.stop_event, row_done)
            summary = self.summary(journal.rows())
            write(summary, self.out)
            on_done(summary, outcome.cancelled, None)
        except Exception as exc:  # noqa: BLE001 - shown in the pane, never a traceback
            on_done(self.summary(rows) if rows else None, False, f"{type(exc).__name__}: {exc}")
        finally:
            close = getattr(backend, "close", None)
            if close is not None:
                close()
