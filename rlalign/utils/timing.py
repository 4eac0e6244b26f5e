"""Small helpers shared by the benchmark scripts: timing medians, the matmul peak and machine facts
(tables: rlalign.utils.tables; JSON: rlalign.utils.files).

Benchmarks report medians of repeated runs after warm-up (machines here are noisy) and ratios
measured within one run; each script prints a table and writes the same rows as JSON.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


class Clock:
    """Wall time since start, for progress lines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        print(f"[{self() / 60:6.2f} min] {message}", flush=True)


def format_metrics(metrics: dict[str, float]) -> str:
    """`key value` pairs of a progress line, 4 decimals."""
    return " ".join(f"{key} {value:.4f}" for key, value in metrics.items())


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each function, timing them in turn within every repeat.

    Interleaving spreads background load evenly over the contenders, so their ratio is fair even
    on a busy machine (a slow minute slows all of them, not just the one measured during it).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_peak_flops(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 5) -> dict:
    """This machine's fp32 matmul throughput (FLOP/s) with the current torch threads: the best
    median over a few square sizes, the roofline that rollout FLOP/s are compared with."""
    by_size = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        seconds = median_seconds(lambda a=a, b=b: a @ b, repeats=repeats, warmup=2)
        by_size[n] = 2 * n**3 / seconds
    best = max(by_size, key=by_size.get)
    return {"flops_per_s": by_size[best], "best_size": best, "by_size": by_size}


def machine_info() -> dict:
    """What the numbers were measured on."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version()}
