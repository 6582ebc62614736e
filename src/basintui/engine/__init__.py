"""The basintui engine: torch and numpy only (never textual or rich).

`session.run(preset, on_event, cancel) -> Report` is the one call that does the work. The folders show
the design: numerics/ (the rank rule, Gram spectra, Lanczos, tolerances), routes/ (the ways to G and its
spectrum), problem/ (data, models, training), analyses/ (Hessian, information loss, dependent inputs,
level set) and session/ (the run, its report and its resources).
"""
