"""Synthetic workloads: named, deterministic scenarios stored as traces (``workloads``)."""
