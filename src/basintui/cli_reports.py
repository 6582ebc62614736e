"""`basintui open REPORT.json` (the app on a saved report) and `basintui compare A.json B.json [--json]`
(two reports side by side). A file that cannot be used (missing, a directory, unreadable, not JSON, JSON of
another shape, a report from a newer basintui) is one line on stderr, `basintui: error: …`, and exit 2.

Torch-free: reading and comparing reports needs only the schema and the renderers; `open` imports the
app when the report is good.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import Report

EXIT_OK = 0
EXIT_USAGE = 2


class ReportFileError(Exception):
    """A report file that cannot be used; the message is one line naming the file and why."""


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the `open` and `compare` subcommands (each sets `handler` to its cmd_* function)."""
    o = subparsers.add_parser("open", help="open a saved report in the app",
                              description="Open a report written by `basintui run --json` (or the app's export) "
                                          "in the app, nothing running; `r` reruns its preset.")
    o.add_argument("report", metavar="REPORT.json", help="a report JSON file (schema basintui.report/1 or /2)")
    o.set_defaults(handler=cmd_open)
    c = subparsers.add_parser("compare", help="compare two saved reports side by side",
                              description="Print two reports side by side: the preset keys that differ, the "
                                          "sizes, rank(G), its tolerance, the kernel dimension N − rank, the "
                                          "regime, Claim 3, training, and the layer rankings.")
    c.add_argument("a", metavar="A.json", help="the first report")
    c.add_argument("b", metavar="B.json", help="the second report")
    c.add_argument("--json", action="store_true",
                   help="print the comparison as JSON (schema basintui.comparison/1) instead of a table")
    c.set_defaults(handler=cmd_compare)


def read_report(path: str | Path) -> Report:
    """The typed report in a file, or ReportFileError with one line saying which file and what is wrong."""
    from .schema import ReportError, load_report

    p = Path(path)
    try:
        return load_report(p)
    except FileNotFoundError:
        raise ReportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportFileError(f"{path}: is a directory, not a report file") from None
    except OSError as exc:
        raise ReportFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ReportError as exc:
        raise ReportFileError(f"{path}: " + " ".join(str(exc).split())) from None


def _fail(message: str) -> int:
    sys.stderr.write(f"basintui: error: {message}\n")
    return EXIT_USAGE


def cmd_open(args: argparse.Namespace) -> int:
    """Check the report, then hand it to the app (tui.app.open_main); exit 2 when it cannot be used."""
    try:
        report = read_report(args.report)
    except ReportFileError as exc:
        return _fail(str(exc))
    from .tui.app import open_main

    return open_main(report, Path(args.report))


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the side-by-side table (or, with --json, comparison_json) of two reports; exit 2 when either
    cannot be used (both are checked before anything is printed)."""
    try:
        a, b = read_report(args.a), read_report(args.b)
    except ReportFileError as exc:
        return _fail(str(exc))
    from .render.compare import compare, comparison_json, comparison_table

    c = compare(a, b, str(args.a), str(args.b))
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(comparison_json(c), indent=1, ensure_ascii=False) + "\n")
        return EXIT_OK
    from rich.console import Console

    Console(file=sys.stdout).print(comparison_table(c))
    return EXIT_OK


__all__ = ["ReportFileError", "add_parsers", "cmd_compare", "cmd_open", "read_report"]
