"""`basintui` entry point: the app by default, `run` / `presets` headless.

Imports are lazy: `--help` and `--version` never import torch. Exit codes: 0 success,
1 runtime failure, 2 usage or preset error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .cli_reports import add_parsers as add_report_parsers
from .cli_sweep import add_parser as add_sweep_parser

if TYPE_CHECKING:
    from . import schema

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130
COMMANDS = ("run", "presets", "serve", "open", "compare", "sweep")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="basintui",
        description="Explore the geometry of a neural network's loss basin: the behavioural-gradient "
                    "matrix G, its exact rank and spectrum, the Hessian beside 2GGᵀ, and where the "
                    "network loses information. With no command, opens the app on a preset.",
        epilog="commands: run PRESET (headless), presets (list them), serve (the app in a browser), open "
               "REPORT.json (a saved report in the app), compare A.json B.json (side by side). "
               "`basintui PRESET` opens the app on that preset.",
    )
    p.add_argument("--version", action="version", version=f"basintui {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="run a preset headless and print a summary",
                       description="Train and analyse a preset without the app; progress on stderr, summary on "
                                   "stdout, the report written where asked.")
    r.add_argument("preset", metavar="PRESET", help="a .toml file or the name of a built-in preset")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset key with a TOML value, e.g. --set model.hidden=[64,64] (repeatable)")
    r.add_argument("--json", metavar="PATH", help="write the report as JSON (schema basintui.report/2); "
                   "'-' writes it to stdout (the summary is then left out; progress stays on stderr)")
    r.add_argument("--npz", metavar="PATH", help="write singular values, loss history and parameters as NPZ "
                   "(a different path from --json)")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the preset's device")
    r.add_argument("--checkpoint", metavar="FILE", help="load this state_dict (.pt / .pth / .safetensors) into the "
                   "preset's model before training (sets model.checkpoint; a relative FILE is relative to the "
                   "working directory); with --set train.steps=0 the network is analysed as saved")
    r.add_argument("--quiet", "-q", action="store_true", help="no summary on stdout")
    r.add_argument("--progress", choices=("auto", "lines"), default="auto",
                   help="auto: a progress bar per stage on a terminal (fraction done, time left), otherwise a "
                        "line as each stage ends and one every 10 s of a long stage; lines: those lines and one "
                        "as each stage starts, on a terminal too (for logs and scripts)")
    sub.add_parser("presets", help="list the built-in presets")
    s = sub.add_parser("serve", help="serve the app in a browser (localhost only)",
                       description="Serve the app in a browser on localhost (reach it from elsewhere over "
                                   "`ssh -L`). Each page runs its own app process; closing the page, or "
                                   "stopping the server, ends it and its engine within two seconds.")
    s.add_argument("preset", nargs="?", default="default",
                   help="a .toml file or the name of a built-in preset (default: default)")
    s.add_argument("--port", type=int, default=8000, help="the port on localhost (default: 8000)")
    s.add_argument("--allow-python-models", action="store_true",
                   help="let the served app run presets with model.kind = \"python\" (these import and run "
                        "the preset's own Python code on this machine); refused by default")
    add_report_parsers(sub)
    add_sweep_parser(sub)
    return p


def _err(msg: str) -> None:
    sys.stderr.write(f"basintui: error: {msg}\n")


def cmd_presets() -> int:
    from .config import list_presets, presets_dir

    items = list_presets()
    if not items:
        _err(f"no presets found in {presets_dir()}")
        return EXIT_FAIL
    width = max(len(n) for n, _ in items)
    for name, desc in items:
        print(f"{name.ljust(width)}  {desc}")
    return EXIT_OK


def _same_file(a: str, b: str) -> bool:
    if a == "-" or b == "-":
        return a == b
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def _check_outputs(args: argparse.Namespace) -> str | None:
    """Why the output paths cannot be used, or None."""
    if args.npz == "-":
        return "--npz -: NPZ is binary and is not written to stdout; give a file path"
    if args.json and args.npz and _same_file(args.json, args.npz):
        return (f"--json and --npz name the same file ({args.json}); each would overwrite the other: "
                "give two paths")
    for flag, path in (("--json", args.json), ("--npz", args.npz)):
        if path and path != "-" and Path(path).expanduser().is_dir():
            return f"{flag} {path}: is a directory; give a file path"
    return None


class _Interrupts:
    """SIGINT and SIGTERM during a run: the first sets the cancel token (the engine stops at its next
    check and the report keeps what was computed); a second aborts without a report."""

    def __init__(self, token) -> None:
        self.token = token
        self.signals: list[int] = []
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "_Interrupts":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc) -> None:
        # The run is over and what it computed is written or about to be: a signal from now on changes
        # nothing (exit 0 with a complete report). Restoring the start-up handler here would let a
        # signal during the summary end the process with 130 beside a complete, uncancelled report.
        # main() restores the caller's own handlers when it returns.
        for sig in self.previous:
            signal.signal(sig, self.late)

    def late(self, signum, frame) -> None:
        self.signals.append(signum)

    def handle(self, signum, frame) -> None:
        self.signals.append(signum)
        if self.token.cancelled:
            if _OWN_PROCESS:  # abort now, from wherever the main thread is (see _startup_signal)
                try:
                    os.write(2, b"\nbasintui: error: interrupted; no report written\n")
                finally:
                    os._exit(EXIT_INTERRUPT)
            raise KeyboardInterrupt
        self.token.cancel()
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        sys.stderr.write(f"\nbasintui: {name}: cancelling (again to abort without a report)...\n")
        sys.stderr.flush()


CANCEL_GRACE_S = 1.0  # after a cancel, how long the engine may take to return before the CLI stops waiting


def _run_engine(preset, on_event, token):
    """session.run in a worker thread, so that signals are handled at once (a Python handler runs only
    between bytecodes of the main thread, never inside a long BLAS/LAPACK call).

    Returns (report, None), or (None, partial) when the engine did not return within CANCEL_GRACE_S
    of a cancel: `partial` is the last report the engine published (typed: a schema.Report)."""
    from .schema.events import Partial
    from .engine.session.report import as_schema
    from .engine.session.run import run

    box: dict[str, object] = {}
    latest: dict[str, object] = {}

    def events(e: object) -> None:
        if isinstance(e, Partial):
            latest["partial"] = e.report  # made typed (as_schema) only if the CLI stops waiting for the engine
        on_event(e)

    def work() -> None:
        try:
            box["report"] = run(preset, events, token)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            box["error"] = exc

    t = threading.Thread(target=work, name="basintui-engine", daemon=True)
    t.start()
    cancelled_at = None
    while t.is_alive():
        t.join(0.05)
        if token.cancelled and cancelled_at is None:
            cancelled_at = time.monotonic()
        if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S and t.is_alive():
            if "partial" in latest:
                return None, as_schema(latest["partial"])
            if token.stage is None:  # still preparing data and model: nothing computed to keep
                return None, _nothing_computed(preset)
            # training or the first spectrum: wait (each step looks at the token); a second signal aborts
    if "error" in box and token.cancelled and token.stage is None:
        return None, _nothing_computed(preset)  # the preparation failed after the cancel: the cancel wins
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["report"], None


def _nothing_computed(preset) -> schema.Report:
    """The report of a run cancelled before training began: the resolved preset and the status."""
    import msgspec

    from . import schema

    training = schema.TrainingSection(
        final_loss=None, steps=0, status="max_steps", message="not started",
        reduction="mean over training inputs of the per-input loss", seconds=0.0, losses=[], rank_history=[])
    return schema.Report(config=msgspec.convert(preset.to_dict(), schema.PresetRecord), device=None, model=None,
                         data=None, training=training)


def _partial_as_cancelled(partial: schema.Report, stage: str | None) -> schema.Report:
    import msgspec

    training = partial.training
    ended = training.status
    if training.message == "not started":
        message = "cancelled while the data and the model were being prepared, before training: nothing was computed"
    else:
        message = (f"{training.message}; training ended with status {ended}, then the run was cancelled during the "
                   f"{stage} stage, which had not stopped {CANCEL_GRACE_S:g} s later: the report holds the stages "
                   "finished before it")
    training = msgspec.structs.replace(training, status="cancelled", cancelled_stage=stage, message=message)
    return msgspec.structs.replace(partial, training=training)


def cmd_run(args: argparse.Namespace) -> int:
    preset = _run_preset(args)
    if isinstance(preset, int):
        return preset

    from rich.console import Console

    from .engine.cancel import CancelToken

    err_console = Console(stderr=True)
    token = CancelToken()
    try:
        with _Interrupts(token):
            outcome = _execute(args, preset, token, err_console)
            if isinstance(outcome, int):
                return outcome
            report, typed, written = outcome
    except KeyboardInterrupt:
        _err("interrupted; no report written")
        _hard_exit_if_engine_running(EXIT_INTERRUPT)
        return EXIT_INTERRUPT
    return _finish(args, report, typed, written, token, err_console)


def _absolute(path: str) -> str:
    """A command-line path, relative to the working directory (not to the preset's folder)."""
    try:
        return os.path.abspath(os.path.expanduser(path)) if path else path
    except (OSError, ValueError):
        return path


def _run_preset(args: argparse.Namespace):
    """The preset `run` was asked for, or the exit code when the outputs or the preset are bad."""
    from .config import PresetError, load_preset

    why = _check_outputs(args)
    if why:
        _err(why)
        return EXIT_USAGE
    sets = list(args.sets)
    if args.device:
        sets.append(f'device="{args.device}"')
    if args.checkpoint is not None:  # a TOML basic string (JSON's escapes are TOML's), absolute: the flag's
        sets.append(f"model.checkpoint={json.dumps(_absolute(args.checkpoint))}")  # path is the shell's
    try:
        return load_preset(args.preset, sets)
    except PresetError as exc:
        _err(str(exc))
        return EXIT_USAGE


def _execute(args: argparse.Namespace, preset, token, err_console):
    """Run the engine and write what it produced: (engine report or None, typed report or None, paths
    written), or the exit code when the engine refused the preset, failed, or a file cannot be written."""
    from .engine.errors import InputError
    from .render.progress import RunProgress

    try:
        with RunProgress(err_console, lines=args.progress == "lines") as progress:
            report, partial = _run_engine(preset, progress.on_event, token)
    except InputError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the engine's boundary: a user model or torch failed
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _err(f"the run failed: {type(exc).__name__}: {first}")
        return EXIT_FAIL
    if report is not None:
        typed, npz_source = report.to_schema(), report  # the engine's report also holds θ
    else:
        typed = _partial_as_cancelled(partial, token.cancelled_stage or "data") if partial is not None else None
        npz_source = typed
    written = _write_outputs(args, typed, npz_source)
    if isinstance(written, int):
        return written
    return report, typed, written


def _write_outputs(args: argparse.Namespace, typed, npz_source):
    """--json (a file, or stdout for `-`) and --npz: the paths written, or EXIT_FAIL with the reason."""
    from .engine.session.report import write_json, write_npz
    from .schema import encode_report

    if typed is None:
        return []
    written = []
    try:
        if args.json and args.json != "-":
            written.append(str(write_json(typed, args.json)))
        if args.npz:
            written.append(str(write_npz(npz_source, args.npz)))
    except OSError as exc:
        _err(f"cannot write the report: {exc}")
        return EXIT_FAIL
    if args.json == "-":
        sys.stdout.buffer.write(encode_report(typed))
        sys.stdout.flush()
    return written


def _finish(args: argparse.Namespace, report, typed, written, token, err_console) -> int:
    """The summary, the paths written and the exit code: 130 for a cancel, the report's error's kind."""
    from rich.console import Console

    from .render.summary import summary

    if report is None:
        for path in written:
            err_console.print(f"wrote {path}", style="dim", highlight=False)
        stage = token.cancelled_stage or "data"
        _err(f"cancelled during the {stage} stage; "
             + ("nothing had been computed yet" if stage == "data" else
                "the report holds the stages finished before it"))
        _hard_exit_if_engine_running(EXIT_INTERRUPT)
        return EXIT_INTERRUPT
    if not args.quiet and args.json != "-":
        Console().print(summary(typed))
    for path in written:
        err_console.print(f"wrote {path}", style="dim", highlight=False)
    if report.status == "cancelled":  # (a signal after the engine had returned: the report is complete, exit 0)
        stage = report.training.cancelled_stage
        _err(f"cancelled{f' during the {stage} stage' if stage else ''}; the report holds what was computed")
        _hard_exit_if_engine_running(EXIT_INTERRUPT)
        return EXIT_INTERRUPT
    if typed.error is not None:
        _err(typed.error.message)
        return EXIT_USAGE if typed.error.kind == "input" else EXIT_FAIL
    return EXIT_OK


_OWN_PROCESS = False  # main() was called as the program (argv from sys.argv), not by a caller in-process


def _hard_exit_if_engine_running(code: int) -> None:
    """After a cancel, with the report written: end the process now when this is the program, or when
    a cancelled call still runs in a helper thread (inside torch or LAPACK). The interpreter's teardown
    would wait for that call (measured: 4 s after a cancelled SVD) and torch's own takes about a
    second (measured 1.0-1.3 s from 'wrote' to exit): a cancel should end the process at once."""
    busy = any(t.name in ("basintui-engine", "basintui-lapack") and t.is_alive() for t in threading.enumerate())
    if busy or _OWN_PROCESS:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)


def cmd_app(preset_name: str) -> int:
    """Open the app on a preset (a bad preset exits 2 before the app starts)."""
    from .config import PresetError, load_preset

    try:
        load_preset(preset_name)
    except PresetError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if os.environ.get("BASINTUI_SERVED") == "1":
        _end_with_parent()
    from .tui.app import main as app_main

    if threading.current_thread() is threading.main_thread():
        # the app is imported: from here a signal is a KeyboardInterrupt, which Textual turns into an
        # orderly exit (the terminal restored, the engines stopped)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
    return app_main(preset_name)


def _end_with_parent(poll_s: float = 0.2) -> None:
    """A served app whose server has died (its input is gone, nobody reads its output) ends itself and
    its process group (its engines) rather than live on: a thread watches the parent's pid."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        try:
            if os.getpgid(0) == os.getpid():  # we lead our group (serve starts each app in a new session)
                os.killpg(0, signal.SIGKILL)
        finally:
            os._exit(EXIT_INTERRUPT)

    threading.Thread(target=watch, name="basintui-parent-watch", daemon=True).start()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _startup_signal(signum, frame):
    """SIGINT or SIGTERM before a run or the app has started (reading the preset, importing torch):
    nothing has been computed, so end at once, one line, 130. Raising KeyboardInterrupt there is not
    safe: raised inside torch's import it can abort the process from C++ (measured: exit -6 with
    a stack dump, or -2, in about 1 of 12 signals sent 0.45-0.75 s after start on a busy machine)."""
    if _OWN_PROCESS:
        try:
            os.write(2, b"\nbasintui: interrupted\n")
        finally:
            os._exit(EXIT_INTERRUPT)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Exit codes 0, 1, 2, 130. SIGINT or SIGTERM at any moment (even while torch imports) ends with
    one line on stderr and 130; during `run` the first one cancels and the report is still written."""
    global _OWN_PROCESS
    _OWN_PROCESS = argv is None
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _startup_signal)
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("\nbasintui: interrupted\n")
        code = EXIT_INTERRUPT
    finally:
        if not _OWN_PROCESS:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if _OWN_PROCESS and "torch" in sys.modules:
        # The work is done and written: skip torch's teardown (about a second, during which a signal
        # would have met Python's default handler and ended the process as killed by SIGINT).
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        if len(argv) > 1:
            _parser().print_usage(sys.stderr)
            _err(f"unexpected arguments after the preset: {' '.join(argv[1:])}")
            return EXIT_USAGE
        return cmd_app(argv[0])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    if args.command is None:
        return cmd_app("default")
    if args.command == "presets":
        return cmd_presets()
    if args.command == "run":
        return cmd_run(args)
    if args.command in ("open", "compare", "sweep"):
        return args.handler(args)
    if args.command == "serve":
        from .tui.serve import serve

        return serve(args.preset, args.port, allow_python_models=args.allow_python_models)
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
