"""Errors the engine raises on purpose. Each carries a message written for a researcher."""

from __future__ import annotations


class EngineError(RuntimeError):
    """A failure at run time (exit 1)."""


class InputError(EngineError):
    """The preset or model cannot be analysed as asked (exit 2): bad data file, device, model."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class ResourceError(InputError):
    """The work would not fit in memory; `estimate_bytes` says how much it would need."""

    def __init__(self, key: str, message: str, estimate_bytes: int) -> None:
        self.estimate_bytes = estimate_bytes
        super().__init__(key, message)


class Cancelled(EngineError):
    """Raised inside a stage when the cancel token is set; the session catches it."""
