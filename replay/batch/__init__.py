"""Sweeps of traces x models on a local process pool or a Dask cluster (``sweep``)."""
