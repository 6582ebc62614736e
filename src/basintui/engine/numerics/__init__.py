"""The numerical core: the rank rule and spectra of Gram matrices, Lanczos."""
