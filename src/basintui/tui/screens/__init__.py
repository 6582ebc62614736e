"""Modal screens: help, engine error, export confirmation."""
