"""Sweeps (`basintui sweep`): the grid × seeds (grid), one run (task), the journal, the shared driver
loop, the local process pool and the Dask backend, the verdicts read from each report, and the summary."""
