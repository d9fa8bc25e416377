"""Wall-clock timing shared by the benchmarks (standard library only, so it imports before torch or TF)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["median_seconds"]


def median_seconds(calls: dict[str, Callable[[], object]], *, warmup: int, repeats: int) -> dict[str, float]:
    """Median wall time of each zero-argument call after `warmup` untimed ones.

    The calls take turns, so a change in machine load hits them alike.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
