"""The package's numba decorator: ``njit``, and a fast-compiling build for test suites.

A kernel build is a trade between compile time and run time. By default the
kernels are compiled for speed:

- ``inline="always"`` inlines a kernel's numba IR into each caller (typed again at
  every call site): the mobility kernel runs 2.4x faster for it
  (bench/bench_replay.py: 3.7 M events/s against 1.6);
- a constant passed from one kernel to another is typed as a literal
  (``Literal[bool](True)``) and the callee is compiled once per distinct
  constant, with the branches the constant rules out pruned.

That costs about 4 minutes of compiling for the replay kernel alone on a cold cache.
``REPLAY_JIT_FAST_COMPILE=1`` builds the same kernels without either: no IR inlining
(LLVM still inlines what it judges worth it) and every argument typed as its plain
type, one compilation per signature. The replay kernel then compiles in about 1.3
minutes and runs at about 40% of the speed: what a test suite on a clean clone wants
(``make test`` sets it); benchmarks and ``make demo`` use the default build. The
setting is part of the compile cache's key (replay._numba_cache_dir): the two builds
never share cached kernels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numba as nb
from numba.core import types

#: the fast-compiling build (REPLAY_JIT_FAST_COMPILE=1; default off)
FAST_COMPILE = os.environ.get("REPLAY_JIT_FAST_COMPILE", "0") not in ("", "0")


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)``, or its fast-compiling build (see the module). Use as
    ``@njit(cache=True)``."""
    if not FAST_COMPILE:
        return nb.njit(**options)
    options.pop("inline", None)

    def wrap(fn: Callable[..., Any]) -> Any:
        disp = nb.njit(**options)(fn)
        typed = disp.get_call_template

        def get_call_template(args: tuple[Any, ...], kws: dict[str, Any]) -> Any:
            # a call from another kernel: its constants as their plain types
            return typed(tuple(types.unliteral(a) for a in args),
                         {k: types.unliteral(v) for k, v in kws.items()})  # fmt: skip

        disp.get_call_template = get_call_template
        return disp

    return wrap
