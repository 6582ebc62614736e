"""One way to print a report number in the CLI's text views."""

from __future__ import annotations


def fmt(v: float | int | str | None, digits: int = 4) -> str:
    """Floats to `digits` significant figures, None as an em dash, anything else as str()."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)
