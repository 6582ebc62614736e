"""The numerical core: the rank rule and the spectra of G and its Gram matrices (spectrum.py), Lanczos on
an operator (lanczos.py), and the tolerances every rank decision shares (tolerances.py)."""
