"""The one best-of-N timer every benchmark section uses (its own module: the sections import it,
and ``benchmarks/__main__.py`` imports the sections)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def best(fn: Callable[[], Any], repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
