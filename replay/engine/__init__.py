"""Runs: a trace's events through a model (what-if) or rebuilt from the recorded pfns (observed).

``whatif`` drives a model over a trace in chunks and writes ``runs``/``steps``;
``observed`` rebuilds the kernel's real buddy state from a capture;
``kernel_compaction`` starts the compaction model where the kernel compacted.
"""
