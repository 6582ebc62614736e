"""The basintui engine: torch and numpy only (never textual or rich).

`session.run(preset, on_event, cancel) -> Report` is the one call that does the work.
"""
