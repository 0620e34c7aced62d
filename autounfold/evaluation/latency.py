"""Latency measurement: one process, warm-up, interleaved repetitions, median, IQR and spread; on CPU or
CUDA (synchronised, so that a sample is the wall time of the whole call, kernels included). Also the
achieved GFLOP/s of a matmul measured the same way, so that a benchmark can state its workload's
achieved GFLOP/s against a peak measured in the same process, on the same device.

Timing rules, on every device: ``time.perf_counter`` around each call, in milliseconds. On CUDA,
``torch.cuda.synchronize(device)`` runs before the clock starts and after the call returns, before the
clock stops, so queued kernels (on every stream of that device) are inside the sample and nothing
left over from a previous call is; the device's context, cuBLAS handles and caching allocator are
brought up by at least ``CUDA_MIN_WARMUP`` untimed rounds. On CPU nothing is synchronised.
"""
from __future__ import annotations

import math
import random
import statistics
import time
from typing import Callable, Dict, Optional, Sequence, Union

import torch

from ..errors import ConfigError

DeviceLike = Union[str, torch.device, None]

CUDA_MIN_WARMUP = 5
"""Untimed rounds on CUDA at least, whatever ``warmup`` says: the first calls create the context,
cuBLAS/cuSOLVER handles and workspaces and grow the caching allocator to its steady size."""

_clock = time.perf_counter  # module attribute so that tests can drive the clock


def _cuda_devices() -> list:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def resolve_device(name: DeviceLike = "cpu") -> torch.device:
    """The ``torch.device`` that ``name`` ("cpu", "cuda" or "cuda:N"; ``None`` means "cpu") names, with
    the CUDA index filled in ("cuda" -> "cuda:<current device>").

    Raises ConfigError (one line, naming the device asked for and the devices that exist here) when the
    name is not a device, is neither cpu nor cuda, or asks for CUDA that this machine or this torch
    build does not have."""
    if name is None:
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device {str(name)!r}: not a device name (use cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ConfigError(f"device {str(name)!r}: latency is measured on cpu or cuda (cuda:N); available here: "
                          + ", ".join(["cpu"] + _cuda_devices()))
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise ConfigError(f"device {str(name)!r}: CUDA was asked for but no CUDA device is available "
                          f"(torch {torch.__version__}, {build}); available here: cpu")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= count:
        raise ConfigError(f"device {str(name)!r}: this machine has {count} CUDA device(s); available here: "
                          + ", ".join(["cpu"] + _cuda_devices()))
    return torch.device("cuda", index)


def device_name(device: DeviceLike = "cpu") -> str:
    """What a result records as the hardware: "cpu", or the CUDA device's name (e.g. "NVIDIA H200")."""
    dev = resolve_device(device)
    return "cpu" if dev.type == "cpu" else torch.cuda.get_device_name(dev.index)


def _synchronizer(dev: torch.device) -> Optional[Callable[[], None]]:
    """A zero-argument call that waits for all queued work on ``dev``; None on CPU (nothing to wait for)."""
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return None


def _spread(s: Sequence[float]) -> dict:
    """median, IQR, p10, p90, min, max (ms). The IQR keeps statistics.quantiles' default "exclusive"
    method (as before, so figures stay comparable; it may reach past min/max for few samples); p10 and
    p90 use the "inclusive" method, which stays within [min, max]."""
    if len(s) >= 2:
        q4, q10 = statistics.quantiles(s, n=4), statistics.quantiles(s, n=10, method="inclusive")
    else:
        q4, q10 = [s[0]] * 3, [s[0]] * 9
    return {"median_ms": statistics.median(s), "iqr_ms": q4[2] - q4[0], "p10_ms": q10[0], "p90_ms": q10[8],
            "min_ms": min(s), "max_ms": max(s)}


def measure_latency(fns: Dict[str, Callable[[], object]], repeats: int = 30, warmup: int = 3,
                    device: DeviceLike = None, order_seed: Optional[int] = 0) -> Dict[str, dict]:
    """Time each zero-argument callable, in milliseconds of wall time per call, under ``torch.inference_mode``.

    Repetitions are interleaved (rounds of one call each: a, b, c, then c, a, b, ...) so that drift in
    machine load affects every method alike, and each round runs in its own order (a permutation drawn
    from ``order_seed``; None keeps the given order every round), so that no method always runs right
    after the same other one: a call that follows one sweeping the caches pays the misses, and with a
    fixed order one method would pay them in every sample. ``warmup`` untimed rounds come first. ``device`` is where
    the callables' work runs ("cpu", "cuda", "cuda:N"; None = "cpu", i.e. no synchronisation: pass the
    CUDA device when the work is on it, or only the launch is timed). On CUDA the device is synchronised
    before the clock starts and after each call, before the clock stops, so a sample includes the
    kernels' time, and at least ``CUDA_MIN_WARMUP`` warm-up rounds run.

    Returns ``{name: {median_ms, iqr_ms, p10_ms, p90_ms, min_ms, max_ms, repeats, warmup, threads,
    device, device_name}}``: times in ms over the ``repeats`` samples; ``warmup`` the untimed rounds
    actually run; ``threads`` = torch.get_num_threads(); ``device`` e.g. "cpu" or "cuda:0";
    ``device_name`` "cpu" or the GPU's name. Raises ConfigError for repeats < 1, warmup < 0 or a
    device that is not here."""
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"measure_latency: repeats must be >= 1 and warmup >= 0 (got repeats={repeats}, "
                          f"warmup={warmup})")
    dev = resolve_device(device)
    sync = _synchronizer(dev)
    rounds = max(warmup, CUDA_MIN_WARMUP) if sync is not None else warmup
    name = device_name(dev)
    samples = {k: [] for k in fns}
    names = list(fns)
    rng = random.Random(order_seed)
    orders = [names if order_seed is None else rng.sample(names, len(names)) for _ in range(repeats)]
    with torch.inference_mode():
        if sync is not None:
            sync()
        for _ in range(rounds):
            for fn in fns.values():
                fn()
                if sync is not None:
                    sync()
        if sync is None:
            for order in orders:
                for k in order:
                    fn = fns[k]
                    t0 = _clock()
                    fn()
                    samples[k].append((_clock() - t0) * 1e3)
        else:
            for order in orders:
                for k in order:
                    fn = fns[k]
                    sync()
                    t0 = _clock()
                    fn()
                    sync()
                    samples[k].append((_clock() - t0) * 1e3)
    return {k: {**_spread(s), "repeats": repeats, "warmup": rounds, "threads": torch.get_num_threads(),
                "device": str(dev), "device_name": name} for k, s in samples.items()}


# ---- achieved GFLOP/s ------------------------------------------------------------------------------

def matmul_flops(m: int, k: int, n: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """Floating-point operations of ``batch`` products (m, k) @ (k, n), counted in real flops.

    A product has m * n * k multiply-adds (MACs). A real MAC is 2 flops (1 multiply + 1 add). A complex
    MAC, (a + ib)(c + id) added to an accumulator, is 8 real flops: 4 real multiplies (ac, bd, ad, bc)
    and 4 real adds (ac - bd, ad + bc, and the two accumulations). So::

        real dtype:    2 * batch * m * k * n
        complex dtype: 8 * batch * m * k * n

    The k - 1 vs k adds per output entry are not distinguished (the usual convention, as in the
    2 n^3 of a square real GEMM)."""
    if min(m, k, n, batch) < 1:
        raise ConfigError(f"matmul_flops: sizes must be >= 1 (got batch={batch}, m={m}, k={k}, n={n})")
    per_mac = 8 if dtype.is_complex else 2
    return per_mac * batch * m * k * n


def gflops(flops: float, ms: float) -> float:
    """GFLOP/s achieved by ``flops`` real flops in ``ms`` milliseconds: flops / (ms * 1e-3) / 1e9."""
    return flops / (ms * 1e-3) / 1e9


def matmul_gflops(m: int, k: int, n: int, batch: int = 1, device: DeviceLike = "cpu",
                  dtype: torch.dtype = torch.float32, repeats: int = 10, warmup: int = 3) -> float:
    """Achieved GFLOP/s of ``torch.matmul`` of a (batch, m, k) by a (batch, k, n) tensor (``batch`` = 1:
    plain (m, k) @ (k, n)) of ``dtype`` on ``device``: ``matmul_flops`` / median time of
    ``measure_latency`` (same synchronisation and warm-up rules as a workload timed with it; the output
    tensor is preallocated so that no allocation is timed). Inputs are seeded standard normal. The
    float32 figure on CUDA follows the process's TF32 setting (torch.backends.cuda.matmul.allow_tf32),
    as does every other float32 matmul in the process.

    The workload-like case: ``matmul_gflops(16, 64, 1, batch=256, dtype=torch.complex64)`` is
    (256, 16, 64) @ (256, 64, 1) complex64, 8 * 256 * 16 * 64 real flops."""
    flops = matmul_flops(m, k, n, batch, dtype)
    dev = resolve_device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    lead = (batch,) if batch > 1 else ()
    a = torch.randn(*lead, m, k, dtype=dtype, device=dev, generator=g)
    b = torch.randn(*lead, k, n, dtype=dtype, device=dev, generator=g)
    c = torch.empty(*lead, m, n, dtype=dtype, device=dev)
    ms = measure_latency({"matmul": lambda: torch.matmul(a, b, out=c)}, repeats=repeats, warmup=warmup,
                         device=dev)["matmul"]["median_ms"]
    return gflops(flops, ms)


def default_peak_size(device: DeviceLike = "cpu") -> int:
    """Side of the square matmul that ``matmul_peak_gflops`` uses by default: 1024 on CPU (2.1 GFLOP
    real, tens of ms on a few cores), 8192 on CUDA (1.1 TFLOP real, large enough to fill a GPU)."""
    return 8192 if resolve_device(device).type == "cuda" else 1024


def matmul_peak_gflops(device: DeviceLike = "cpu", dtype: torch.dtype = torch.float32, n: Optional[int] = None,
                       repeats: int = 10, warmup: int = 3) -> float:
    """Achieved GFLOP/s of a large square (n, n) @ (n, n) matmul of ``dtype`` on ``device``: the
    practical peak that a workload's achieved GFLOP/s is compared with. 2 n^3 real flops for a real
    dtype, 8 n^3 for a complex one (see ``matmul_flops``), over the median time of ``repeats``
    synchronised calls after ``warmup`` (``n`` default: ``default_peak_size(device)``)."""
    n = default_peak_size(device) if n is None else n
    return matmul_gflops(n, n, n, 1, device, dtype, repeats, warmup)


def peak_report(device: DeviceLike = "cpu", n: Optional[int] = None, batched_shape: Sequence[int] = (256, 16, 64, 1),
                repeats: int = 10, warmup: int = 3) -> dict:
    """What a benchmark writes beside its latencies, to state achieved GFLOP/s against peak:
    ``{device, device_name, threads, square_n, square_float32_gflops, square_complex64_gflops,
    batched_shape, batched_complex64_gflops}``. ``batched_shape`` = (batch, m, k, n): a
    (batch, m, k) @ (batch, k, n) complex64 product like the workload's (default (256, 16, 64) @
    (256, 64, 1)). All GFLOP/s are finite and positive (median of ``repeats`` timed calls)."""
    dev = resolve_device(device)
    n = default_peak_size(dev) if n is None else n
    bb, bm, bk, bn = (int(v) for v in batched_shape)
    return {"device": str(dev), "device_name": device_name(dev), "threads": torch.get_num_threads(), "square_n": n,
            "square_float32_gflops": matmul_peak_gflops(dev, torch.float32, n, repeats, warmup),
            "square_complex64_gflops": matmul_peak_gflops(dev, torch.complex64, n, repeats, warmup),
            "batched_shape": [bb, bm, bk, bn],
            "batched_complex64_gflops": matmul_gflops(bm, bk, bn, bb, dev, torch.complex64, repeats, warmup)}


def fraction_of_peak(achieved_gflops: float, peak_gflops: float) -> float:
    """achieved / peak (a fraction, e.g. 0.12 = 12 % of peak); NaN when the peak is not positive and finite."""
    if not (math.isfinite(peak_gflops) and peak_gflops > 0):
        return float("nan")
    return achieved_gflops / peak_gflops
