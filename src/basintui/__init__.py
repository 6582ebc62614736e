"""basintui: the geometry of a neural network's loss basin, in the terminal."""

__version__ = "0.1.0"
