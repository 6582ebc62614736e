"""`DIR/runs.jsonl`: one JSON line per finished run, written, flushed and fsynced as it finishes, so a
SIGKILL loses at most the runs in flight. Reading skips a line a kill cut short (the next append starts
on a fresh line). `--resume` runs only the (point, seed) pairs with no `ok` or `failed` row; a
`cancelled` row is run again. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

import msgspec

from ..schema.sweep import RunRow, decode_row, encode_row
from .grid import point_key

NAME = "runs.jsonl"
DONE = ("ok", "failed")


def pair(point: dict, seed: int) -> tuple[str, int]:
    return point_key(point), int(seed)


class Journal:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / NAME
        self._fh = None

    def exists(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def open(self) -> Journal:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the sweep, closed by close()
        if self._fh.tell() > 0 and not self._ends_with_newline():
            self._fh.write(b"\n")  # a line cut short by a kill: the next row starts on its own line
            self._sync()
        return self

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def append(self, row: RunRow) -> None:
        assert self._fh is not None, "Journal.open() first"
        self._fh.write(encode_row(row) + b"\n")
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def rows(self) -> list[RunRow]:
        """Every readable row, in order (a line cut short by a kill is skipped)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                out.append(decode_row(line))
            except msgspec.DecodeError:
                continue
        return out

    def done(self) -> set[tuple[str, int]]:
        """The (point, seed) pairs that have a final row (ok or failed)."""
        return {pair(r.point, r.seed) for r in self.rows() if r.status in DONE}


def latest(rows: list[RunRow]) -> dict[tuple[str, int], RunRow]:
    """Per (point, seed), its final row if it has one, else its last row."""
    out: dict[tuple[str, int], RunRow] = {}
    for r in rows:
        key = pair(r.point, r.seed)
        old = out.get(key)
        if old is None or old.status not in DONE or r.status in DONE:
            out[key] = r
    return out
