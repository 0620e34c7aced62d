"""Latency measurement: one process, warm-up, interleaved repetitions, median and IQR."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict

import torch


def measure_latency(fns: Dict[str, Callable[[], object]], repeats: int = 30, warmup: int = 3) -> Dict[str, dict]:
    """Time each zero-argument callable; repetitions are interleaved (round robin) so that drift in
    machine load affects every method alike. Returns {name: {median_ms, iqr_ms, repeats, threads}}."""
    samples = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, s in samples.items():
        q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
        out[name] = {"median_ms": statistics.median(s), "iqr_ms": q[2] - q[0], "repeats": repeats,
                     "threads": torch.get_num_threads()}
    return out
