"""The session that runs the stages in order, the report it fills, and the resource guard.

`run(preset, on_event, cancel) -> Report` is the one call that does the work."""

from .run import run

__all__ = ["run"]
