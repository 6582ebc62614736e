"""The one place the app touches the engine: the run itself, and export.

A run is a Textual thread worker (exclusive, `exit_on_error=False`) that supervises an engine
process running `session.run(preset, on_event, cancel)`. The supervisor polls the worker's
`is_cancelled` every 50 ms; on cancel it sets the engine's token and returns at once, so cancel
and quit take effect within 1 s even while the engine sits in one long BLAS call (a process that
has not stopped 1 s later is terminated; its messages are dropped by run id).

The engine process puts the engine's events themselves (`basintui.schema.events`, which pickle) on
the queue; the supervisor posts each to the app as one message, `EngineEvent(run_id, event)`
(`post_message` is thread-safe). Training progress goes out as `TrainProgress` snapshots at most 10
times a second; every other event always goes out, in order. A run ends with `Finished` (its typed
report, plus the engine's own report for export) or `Failed`.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import App
from textual.worker import Worker, get_current_worker

from ..config import Preset
from ..engine.cancel import WorkerToken
from ..engine.errors import InputError
from ..schema.events import Event, Failed, Finished, StageProgress, TrainProgress, TrainStep
from .messages import EngineEvent, ExportDone, ExportFailed, RunStarted

Session = Callable[[Preset, Callable[[object], None], Any], Any]

PROGRESS_INTERVAL_S = 0.1  # at most 10 progress snapshots a second
POLL_S = 0.05  # the supervisor's cancel poll
HISTORY_POINTS = 2048  # the loss history a snapshot carries is decimated to at most this many points


# --------------------------------------------------------------------------- the run


def _default_session() -> Session:
    from ..engine.session.run import run  # imports torch: only ever in the engine process

    return run


class _History:
    """Loss history decimated to at most HISTORY_POINTS points (keeps every stride-th step)."""

    def __init__(self) -> None:
        self.stride = 1
        self.steps: list[int] = []
        self.losses: list[float] = []

    def add(self, step: int, loss: float) -> None:
        if step % self.stride:
            return
        self.steps.append(step)
        self.losses.append(loss)
        if len(self.steps) > HISTORY_POINTS:
            self.stride *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self.losses = [self.losses[i] for i in keep]


class _Outbox:
    """In the engine process: engine events onto the queue as they are; training steps become
    `TrainProgress` snapshots at most 10 a second, flushed before any other event so the order is kept.
    Thread-safe: the engine's progress heartbeat emits from its own thread (engine/progress.py)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.history = _History()
        self.pending: TrainStep | None = None
        self.last_post = 0.0
        self.finished: Finished | None = None  # the session's own, sent with the export blob (_Result)
        self._lock = threading.Lock()

    def flush(self) -> None:
        if self.pending is not None:
            p, self.pending = self.pending, None
            self.last_post = time.monotonic()
            self.out.put(TrainProgress(p.step, p.total, p.loss, p.elapsed, tuple(self.history.steps),
                                       tuple(self.history.losses)))

    def on_event(self, e: Event) -> None:
        with self._lock:
            self._on_event(e)

    def _on_event(self, e: Event) -> None:
        if isinstance(e, StageProgress):  # a snapshot beside the training snapshot: neither orders the other
            self.out.put(e)
            return
        if isinstance(e, TrainStep):
            self.history.add(e.step, e.loss)
            self.pending = e
            if time.monotonic() - self.last_post >= PROGRESS_INTERVAL_S:
                self.flush()
            return
        # Keep the order (a snapshot never arrives after a later event) and the rate (never more
        # than one snapshot per interval): a pending snapshot goes out before the next event only
        # if its interval is up; otherwise it is dropped (the report carries the final values).
        if time.monotonic() - self.last_post >= PROGRESS_INTERVAL_S:
            self.flush()
        self.pending = None
        if isinstance(e, Finished):  # the result goes out once session.run has returned (_Result)
            self.finished = e
        else:
            self.out.put(e)


@dataclass(frozen=True)
class _Result:
    """The last item of a run that returned: its Finished event (the typed report) and the engine's
    own report pickled (for export: θ and the arrays), None when it could not be pickled."""

    finished: Finished
    blob: bytes | None


def _result(report: Any, finished: Finished | None) -> _Result:
    """In the engine process: the session's Finished event (made from the report if the session sent
    none) and the engine Report pickled for export."""
    import pickle

    try:
        blob = pickle.dumps(report)
    except (pickle.PicklingError, TypeError, AttributeError):  # a user model's object that cannot be
        blob = None  # pickled (a lambda, a lock): the report is still shown; only export needs the blob
    return _Result(finished or Finished(report.to_schema()), blob)


def _failed(exc: BaseException) -> Failed:
    kind = "input" if isinstance(exc, (InputError, ValueError)) else "runtime"
    return Failed(kind, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _end_with_parent(parent: int, poll_s: float = 0.2) -> None:
    """In the engine process: end at once when the app that started it is gone (killed, crashed, or
    ended without a word), instead of running on at full CPU with nobody to read its results."""
    import os

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="basintui-parent-watch", daemon=True).start()


ENGINE_NICENESS = 10  # the engine process's scheduling priority below the app's


def _yield_to_the_app() -> None:
    """In the engine process only: a lower CPU priority, so that when the app needs a core for a frame
    the scheduler gives it one at once (measured on 2 cores: frames while the engine computes went from
    up to 88 ms to the app's idle cost); the engine still has every core while the app is idle."""
    try:
        os.nice(ENGINE_NICENESS)
    except (OSError, AttributeError):  # not permitted, or no nice() on this platform: same speed, less smooth
        pass


def _engine_main(jobs: Any, out: Any, cancel: Any, warm: bool, parent: int | None = None) -> None:
    """The engine process: import the engine (torch) while idle, then run one job and exit."""
    if parent is not None:
        _end_with_parent(parent)
    _yield_to_the_app()

    default, import_error = None, ""
    if warm:
        try:
            default = _default_session()
        except BaseException as exc:  # noqa: BLE001 - reported to the app
            import_error = f"{type(exc).__name__}: {exc}"
    job = jobs.get()
    if job is None:
        return
    preset, session = job
    outbox = _Outbox(out)
    try:
        from .serve import PYTHON_REFUSED, python_models_allowed

        if preset.model.kind == "python" and not python_models_allowed():  # the bridge refuses first; never run it
            raise InputError("", PYTHON_REFUSED)
        run = session or default
        if run is None:
            raise RuntimeError(f"the engine cannot be imported: {import_error}")
        report = run(preset, outbox.on_event, WorkerToken(cancel.is_set))
        out.put(_result(report, outbox.finished))
    except BaseException as exc:  # noqa: BLE001 - reported to the app, never raised
        out.put(_failed(exc))
    out.close()
    out.join_thread()  # everything is in the pipe now
    # Skip the interpreter's teardown (torch's takes up to a second): nothing is left to clean up,
    # and a cancelled run should let go of its CPU at once.
    import os

    os._exit(0)


class _EngineProcess:
    """A spawned process that has imported the engine and waits for one job (no GIL shared with the UI)."""

    def __init__(self, warm: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.jobs = ctx.Queue()
        self.out = ctx.Queue()
        self.cancel = ctx.Event()
        import os

        self.process = ctx.Process(target=_engine_main, args=(self.jobs, self.out, self.cancel, warm, os.getpid()),
                                   daemon=True, name="basintui-engine")
        self.process.start()
        # the threads that wait on the process once it is asked to stop (stop) or killed (kill_after)
        self.reaper: threading.Thread | None = None
        self.killer: threading.Thread | None = None

    def kill_after(self, grace: float) -> threading.Thread:
        """SIGKILL the process if it is still alive `grace` seconds from now (in a thread, returned)."""

        def reap() -> None:
            self.process.join(grace)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(1.0)

        # its own thread: the kill must come `grace` after SIGTERM even where a reaper is still waiting
        self.killer = threading.Thread(target=reap, daemon=True, name="basintui-killer")
        self.killer.start()
        return self.killer

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the process to end; True if it has. Once a reaper or killer waits on
        the process, this waits on them, never on the process beside them: two threads waiting on one
        child race for its exit status, and the loser sees a dead process as alive."""
        deadline = time.monotonic() + timeout
        waiters = [t for t in (self.reaper, self.killer) if t is not None]
        for t in waiters:
            t.join(max(0.0, deadline - time.monotonic()))
        if not waiters:
            self.process.join(max(0.0, deadline - time.monotonic()))
        return not self.process.is_alive()

    def stop(self, grace: float) -> threading.Thread:
        """Ask the run to stop, then end the process if it has not within `grace` seconds (in a thread,
        returned)."""
        self.cancel.set()
        try:
            self.jobs.put_nowait(None)  # an idle (prewarmed) process exits at once
        except (ValueError, OSError, queue.Full):  # the queue is closed or full: the process is ending anyway
            pass

        def reap() -> None:
            self.process.join(grace)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(1.0)
                if self.process.is_alive():
                    self.process.kill()
                    self.process.join(1.0)

        if self.reaper is None or not self.reaper.is_alive():  # one reaper at a time waits on the process
            self.reaper = threading.Thread(target=reap, daemon=True, name="basintui-reaper")
            self.reaper.start()
        return self.reaper


def _next_item(proc: _EngineProcess) -> Event | _Result | None:
    """The engine process's next item; None when there is none yet; Failed when the process ended
    without a result."""
    try:
        return proc.out.get(timeout=POLL_S)
    except queue.Empty:
        if proc.process.is_alive():
            return None
    try:  # the last items may still be in the pipe
        return proc.out.get(timeout=0.2)
    except queue.Empty:
        return Failed("runtime", "The engine process ended without a result "
                      f"(exit code {proc.process.exitcode}); it may have run out of memory.")


class Bridge:
    """Starts, cancels and supersedes engine runs for one app; drops stale runs' messages by run id.

    Each run is a Textual thread worker that supervises a spawned engine process: the engine's Python
    never competes with the UI for the GIL (measured: a busy Python thread slows the engine tenfold,
    and the engine's thread slows the UI as much). One process is kept warm (torch imported) for the
    next run. `session` replaces `engine.session.run` (a module-level function: it travels by name).
    """

    def __init__(self, session: Session | None = None) -> None:
        self._session = session
        self._run_id = 0
        self._active: int | None = None  # the run id whose worker is running
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._spare: _EngineProcess | None = None
        self._procs: list[_EngineProcess] = []
        self._closed = False
        self.running_process: _EngineProcess | None = None  # the process of the latest run
        # The resource tracker passes sys.stderr's descriptor to its process; inside a running app
        # stderr is Textual's capture (no descriptor), so start the tracker now, before the app runs.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        self.progress_posted = 0  # snapshots posted (the tests check the rate)

    # ---- state the app reads
    @property
    def run_id(self) -> int:
        return self._run_id

    @property
    def busy(self) -> bool:
        return self._active is not None

    def is_current(self, run_id: int) -> bool:
        return run_id == self._run_id

    # ---- processes
    def prewarm(self) -> None:
        """Start an engine process now so the next run does not wait for torch to import."""
        with self._lock:
            if self._closed:
                return
            if self._spare is None or not self._spare.process.is_alive():
                self._spare = _EngineProcess(warm=self._session is None)
                self._procs = [p for p in self._procs if p.process.is_alive()] + [self._spare]

    def _take(self) -> _EngineProcess:
        with self._lock:
            proc, self._spare = self._spare, None
        if proc is None or not proc.process.is_alive():
            proc = _EngineProcess(warm=self._session is None)
            self._procs.append(proc)
        return proc

    def shutdown(self, timeout: float = 1.0, *, terminate: bool = False) -> bool:
        """Stop every engine process (running and warm); True if all ended within `timeout` s.

        `terminate`: the app is quitting, nothing is wanted from the engine any more: SIGTERM at once
        instead of waiting for its next cancel check."""
        with self._lock:
            self._closed = True
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            if terminate and p.process.is_alive():
                p.cancel.set()
                p.process.terminate()
                p.kill_after(0.3)  # SIGTERM can wait behind busy I/O; never outlive the app
            else:
                p.stop(0.2)
        deadline = time.monotonic() + timeout
        return all([p.wait(max(0.0, deadline - time.monotonic())) for p in procs])

    # ---- commands
    def start(self, app: App, preset: Preset) -> int:
        """Start a run (replacing any running one: exclusive worker) and return its id."""
        with self._lock:
            self._run_id += 1
            run_id = self._run_id
            self._active = run_id
        app.post_message(RunStarted(run_id, preset.name))
        from .serve import PYTHON_REFUSED, python_models_allowed

        if preset.model.kind == "python" and not python_models_allowed():
            # a served app runs the preset's own code only where the server's owner allowed it
            with self._lock:
                if self._active == run_id:
                    self._active = None
            app.post_message(EngineEvent(run_id, Failed("input", f"{PYTHON_REFUSED}.",
                                                        f"preset {preset.name!r}, model.factory = "
                                                        f"{preset.model.factory!r}")))
            return run_id
        self._worker = app.run_worker(
            lambda: self._supervise(app, run_id, preset),
            name=f"engine run {run_id}",
            group="engine",
            description=f"session.run({preset.name!r})",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )
        return run_id

    def cancel(self) -> bool:
        """Cancel the running run, if any: its later messages are dropped. True if one was running."""
        with self._lock:
            was = self._active is not None
            self._active = None
            self._run_id += 1  # everything still in flight from the cancelled run is now stale
        if self._worker is not None:
            self._worker.cancel()
        return was

    # ---- the worker
    def _supervise(self, app: App, run_id: int, preset: Preset) -> None:
        worker = get_current_worker()
        proc = self._take()
        self.running_process = proc
        proc.jobs.put((preset, self._session))

        def stale() -> bool:
            return worker.is_cancelled or not self.is_current(run_id)

        try:
            while True:
                if stale():
                    proc.stop(0.5)
                    return
                item = _next_item(proc)
                if item is None:
                    continue
                message = self._message(run_id, item)
                if not stale():
                    app.post_message(message)
                if isinstance(message.event, (Finished, Failed)):
                    return
        finally:
            with self._lock:
                if self._active == run_id:
                    self._active = None
            self.prewarm()  # the next run starts without waiting for torch to import

    def _message(self, run_id: int, item: Event | _Result) -> EngineEvent:
        """The one message for an item from the engine process (the result carries the export handle)."""
        if isinstance(item, _Result):
            return EngineEvent(run_id, item.finished, ReportHandle(item.blob))
        if isinstance(item, TrainProgress):
            self.progress_posted += 1
        return EngineEvent(run_id, item)

    # ---- export
    def export(self, app: App, handle: ReportHandle, json_path: str, npz_path: str) -> None:
        """Write the report as JSON and NPZ (atomic writes) in a thread worker; posts ExportDone/Failed."""

        def work() -> None:
            try:
                paths = handle.write(json_path, npz_path)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                app.post_message(ExportFailed(f"{type(exc).__name__}: {exc}"))
                return
            app.post_message(ExportDone(paths))

        app.run_worker(work, name="export", group="export", thread=True, exit_on_error=False)


@dataclass(frozen=True)
class ReportHandle:
    """The engine's Report, pickled in the engine process; unpickled (importing the engine) only to export."""

    blob: bytes | None

    def load(self) -> Any:
        import pickle

        if self.blob is None:
            raise RuntimeError("this run's report could not be carried out of the engine process")
        return pickle.loads(self.blob)

    def write(self, json_path: str, npz_path: str) -> tuple[str, str]:
        from ..engine.session.report import write_json, write_npz

        report = self.load()
        return str(write_json(report, json_path)), str(write_npz(report, npz_path))


def export_paths(base: str) -> tuple[str, str]:
    """`report.json` → (`report.json`, `report.npz`); a path without .json gets both suffixes."""
    p = Path(base).expanduser()
    if p.suffix.lower() in (".json", ".npz"):
        p = p.with_suffix("")
    return str(p.with_suffix(".json")), str(p.with_suffix(".npz"))
