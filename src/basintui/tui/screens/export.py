"""Export: confirm (or edit) the path; the report goes to PATH.json and PATH.npz, the screen to PATH.svg."""

from __future__ import annotations

from .path import PathScreen


class ExportScreen(PathScreen):
    """Returns the confirmed base path (the .json / .npz / .svg names are derived from it), or None."""

    def __init__(self, default_path: str) -> None:
        super().__init__("Export the report",
                         "Write the report as JSON and NPZ (PATH.json, PATH.npz) and the screen as SVG (PATH.svg):",
                         default_path)
