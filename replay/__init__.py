"""replay: trace-replay analysis of Linux physical-memory fragmentation."""

__version__ = "0.1.0"
