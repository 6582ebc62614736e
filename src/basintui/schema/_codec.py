"""The report's JSON text: decode with validation (errors name the field), encode as written to files."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import msgspec

from ._report import SCHEMA, SCHEMAS, Report


class ReportError(ValueError):
    """Not a readable basintui report. `path` names the field at fault ("$" for the whole text),
    e.g. "$.G.rank"; the message says what was expected there."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


class _Head(msgspec.Struct):
    schema: Any = None


def decode_report(data: bytes | str | dict) -> Report:
    """A Report from its JSON text (bytes or str) or its builtins form (a dict, e.g. json.load's).

    Reads basintui.report/1 and /2; the result is a /2 report (`schema` says so; a /1 file's `plan`
    is None). Non-finite floats are read from their string form ("nan", "inf", "-inf")."""
    if isinstance(data, dict):
        _check_schema(data.get("schema"), "schema" in data)
        return _normalised(_validated(lambda: msgspec.convert(data, Report, strict=False)))
    if not (data.strip() if isinstance(data, (bytes, str)) else data):
        raise ReportError("not a basintui report: it is empty")
    try:
        head = msgspec.json.decode(data, type=_Head)
    except msgspec.ValidationError as exc:  # valid JSON, but not an object
        raise ReportError(f"not a basintui report: the JSON text is not an object ({exc})") from None
    except msgspec.DecodeError as exc:
        raise ReportError(f"not a basintui report: the text is not JSON ({exc})") from None
    _check_schema(head.schema, head.schema is not None)
    return _normalised(_validated(lambda: msgspec.json.decode(data, type=Report, strict=False)))


def load_report(path: str | os.PathLike) -> Report:
    """decode_report on a file's bytes (OSError when it cannot be read)."""
    with open(path, "rb") as fh:
        return decode_report(fh.read())


def encode_report(report: Report) -> bytes:
    """The report's JSON text, as written to a file or stdout (indented, non-finite floats as strings)."""
    return json.dumps(report_to_builtins(report), indent=1).encode() + b"\n"


def report_to_builtins(report: Report) -> dict[str, Any]:
    """The report as plain dicts, lists, numbers and strings (JSON-ready: nan and ±inf as strings)."""
    return _json_safe(msgspec.to_builtins(report))


def _check_schema(schema: Any, present: bool) -> None:
    expected = " or ".join(f'"{s}"' for s in SCHEMAS)
    if not present:
        raise ReportError(f"not a basintui report: `schema` is missing (expected {expected})", "$.schema")
    if schema in SCHEMAS:
        return
    if isinstance(schema, str) and schema.startswith("basintui.report/"):
        version = schema.rsplit("/", 1)[1]
        newest = int(SCHEMA.rsplit("/", 1)[1])
        who = ("a newer basintui wrote it; upgrade basintui to read it" if version.isdigit() and int(version) > newest
               else "no basintui writes that version")
        raise ReportError(f"`schema` is {_show(schema)}, a version this basintui cannot read (expected {expected}); "
                          f"{who}", "$.schema")
    raise ReportError(f"not a basintui report: `schema` is {_show(schema)} (expected {expected})", "$.schema")


def _validated(decode) -> Report:
    try:
        return decode()
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in text else "$"
        raise ReportError(f"not a valid basintui report: {text}", path) from None


def _normalised(report: Report) -> Report:
    """A /1 file read into the /2 shape says /2 (its /2-only sections are None)."""
    if report.schema == SCHEMA:
        return report
    return msgspec.structs.replace(report, schema=SCHEMA)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x
