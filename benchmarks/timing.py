"""What the benchmarks share: timing a callable, naming the machine, waiting for a quiet one."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def best_of(repeats: int, run) -> tuple[float, object]:
    """Returns (fastest seconds, result of the last run)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def cpu_model() -> str:
    """Returns the CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """Returns the 1, 5 and 15 minute load averages as `uptime` prints them."""
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_line() -> str:
    """Returns the line every table starts with: CPU, cores, torch version, threads and the load right now."""
    return (f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; {load_average()}")


def wait_until_quiet(max_load: float, max_wait_s: float = 1200, poll_s: float = 30) -> float:
    """Sleeps until the 1-minute load average is below max_load, at most max_wait_s; returns that load."""
    deadline = time.monotonic() + max_wait_s
    while (load := os.getloadavg()[0]) >= max_load and time.monotonic() < deadline:
        print(f"waiting for a quiet machine: 1-minute load {load:.2f} >= {max_load}", flush=True)
        time.sleep(poll_s)
    if load >= max_load:
        print(f"the machine never got quiet: running at 1-minute load {load:.2f}", flush=True)
    return load
