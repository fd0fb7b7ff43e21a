"""Progress callbacks: how core code reports long work without printing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Progress:
    """Callbacks the CLI passes in to show progress (core code never prints).

    ``start(description, total)`` opens a task of ``total`` units (bytes,
    events); ``advance_to(done)`` moves it to ``done`` units.
    """

    start: Callable[[str, int], None] = lambda desc, total: None
    advance_to: Callable[[int], None] = lambda done: None
