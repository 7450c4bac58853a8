"""What the benchmarks share: timing a callable."""
from __future__ import annotations

import time


def best_of(repeats: int, run) -> tuple[float, object]:
    """Returns (fastest seconds, result of the last run)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result
