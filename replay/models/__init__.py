"""Allocator and defragmentation models: a frozen config plus numba kernels."""
