"""`basintui` entry point: the app by default, `run` / `presets` headless.

Imports are lazy: `--help` and `--version` never import torch. Exit codes: 0 success,
1 runtime failure, 2 usage or preset error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPT = 0, 1, 2, 130
COMMANDS = ("run", "presets", "serve")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="basintui",
        description="Explore the geometry of a neural network's loss basin: the behavioural-gradient "
                    "matrix G, its exact rank and spectrum, the Hessian beside 2GGᵀ, and where the "
                    "network loses information. With no command, opens the app on a preset.",
        epilog="commands: run PRESET (headless), presets (list them), serve (the app in a browser). "
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
    r.add_argument("--json", metavar="PATH", help="write the report as JSON (schema basintui.report/1)")
    r.add_argument("--npz", metavar="PATH", help="write singular values, loss history and parameters as NPZ")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the preset's device")
    r.add_argument("--quiet", "-q", action="store_true", help="no summary on stdout")
    sub.add_parser("presets", help="list the built-in presets")
    s = sub.add_parser("serve", help="serve the app in a browser (localhost only)")
    s.add_argument("preset", nargs="?", default="default")
    s.add_argument("--port", type=int, default=8000)
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


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from .config import PresetError, load_preset

    sets = list(args.sets)
    if args.device:
        sets.append(f'device="{args.device}"')
    try:
        preset = load_preset(args.preset, sets)
    except PresetError as exc:
        _err(str(exc))
        return EXIT_USAGE

    from rich.console import Console

    from .engine.cancel import CancelToken
    from .engine.errors import InputError
    from .engine.report import write_json, write_npz
    from .engine.session import run
    from .render.progress import RunProgress
    from .render.summary import summary

    err_console = Console(stderr=True)
    token = CancelToken()

    def on_sigint(signum, frame):
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        sys.stderr.write("\nbasintui: cancelling (press Ctrl-C again to abort without a report)...\n")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with RunProgress(err_console) as progress:
            report = run(preset, progress.on_event, token)
    except InputError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPT
    finally:
        signal.signal(signal.SIGINT, previous)

    data = report.to_dict()
    written = []
    try:
        if args.json:
            written.append(str(write_json(report, args.json)))
        if args.npz:
            written.append(str(write_npz(report, args.npz)))
    except OSError as exc:
        _err(f"cannot write the report: {exc}")
        return EXIT_FAIL
    if not args.quiet:
        Console().print(summary(data))
    for path in written:
        err_console.print(f"wrote {path}", style="dim", highlight=False)
    if report.status == "cancelled":
        _err("cancelled; the report holds what was computed")
        return EXIT_INTERRUPT
    if report.error:
        _err(report.error["message"])
        return EXIT_USAGE if report.error["kind"] == "input" else EXIT_FAIL
    return EXIT_OK


def cmd_app(preset_name: str) -> int:
    """Open the app on a preset (a bad preset exits 2 before the app starts)."""
    from .config import PresetError, load_preset

    try:
        load_preset(preset_name)
    except PresetError as exc:
        _err(str(exc))
        return EXIT_USAGE
    from .tui.app import main as app_main

    return app_main(preset_name)


def main(argv: list[str] | None = None) -> int:
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
    if args.command == "serve":
        from .tui.serve import serve

        return serve(args.preset, args.port)
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
