"""Latency measurement and achieved GFLOP/s, on CPU; the CUDA branch through a stand-in torch.cuda
(is_available, synchronize, device name) and a stand-in clock. No test asserts a wall-clock time: the
only times asserted are those of the stand-in clock."""
import math

import pytest
import torch

import autounfold.evaluation.latency as latency
from autounfold.errors import ConfigError
from autounfold.evaluation.latency import (CUDA_MIN_WARMUP, fraction_of_peak, gflops, matmul_flops, matmul_gflops,
                                           matmul_peak_gflops, measure_latency, peak_report, resolve_device)

SPREAD = {"median_ms", "iqr_ms", "p10_ms", "p90_ms", "min_ms", "max_ms"}
KEYS = SPREAD | {"repeats", "warmup", "threads", "device", "device_name"}


def _recorders(log, names):
    return {n: (lambda n=n: log.append(n)) for n in names}


class FakeClock:
    """perf_counter stand-in: each read is logged; time advances only when something advances it."""

    def __init__(self, log):
        self.log, self.t = log, 100.0

    def __call__(self):
        self.log.append("clock")
        return self.t


@pytest.fixture
def fake_cuda(monkeypatch):
    """One fake CUDA device: synchronize is logged (and, via .kernel_s, 'waits' for queued kernels by
    advancing the fake clock), the device's name is 'Fake GPU'."""
    log = []
    clock = FakeClock(log)
    state = {"kernel_s": 0.0, "synced": []}

    def synchronize(device=None):
        log.append("sync")
        state["synced"].append(device)
        clock.t += state["kernel_s"]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(latency, "_clock", clock)
    return log, clock, state


# ---- CPU: keys, order, warm-up ----------------------------------------------------------------------

def test_result_keys_and_cpu_defaults():
    out = measure_latency({"a": lambda: None, "b": lambda: torch.ones(3).sum()}, repeats=5, warmup=1)
    assert list(out) == ["a", "b"]
    for r in out.values():
        assert set(r) == KEYS
        assert r["repeats"] == 5 and r["warmup"] == 1 and r["threads"] == torch.get_num_threads()
        assert r["device"] == "cpu" and r["device_name"] == "cpu"
        assert all(math.isfinite(r[k]) and r[k] >= 0 for k in SPREAD)
        assert r["min_ms"] <= r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]


def test_backwards_compatible_call_and_keys():
    """The callers' form, measure_latency(fns, repeats=...) and (fns, repeats=, warmup=), still works and
    still gives median_ms, iqr_ms, repeats and threads."""
    for out in (measure_latency({"m": lambda: None}, repeats=3),
                measure_latency({"m": lambda: None}, repeats=2, warmup=2),
                measure_latency({"m": lambda: None}, 2, 0, "cpu")):
        assert {"median_ms", "iqr_ms", "repeats", "threads"} <= set(out["m"])


def test_interleaved_round_robin_and_warmup_untimed(monkeypatch):
    log = []
    monkeypatch.setattr(latency, "_clock", FakeClock(log))
    out = measure_latency(_recorders(log, ["a", "b", "c"]), repeats=4, warmup=2, order_seed=None)
    calls = [e for e in log if e != "clock"]
    assert calls == ["a", "b", "c"] * (2 + 4)                       # round robin, warm-up in the same order
    assert "clock" not in log[:2 * 3]                                # the 6 warm-up calls: no clock read
    timed = log[2 * 3:]
    assert timed == [e for n in ["a", "b", "c"] * 4 for e in ("clock", n, "clock")]
    assert all(r["repeats"] == 4 and r["warmup"] == 2 for r in out.values())


def test_each_round_runs_every_method_once_in_its_own_order(monkeypatch):
    """By default the timed rounds are permutations drawn from order_seed: every method once a round,
    not always in the given order (so no method always follows the same one), the same orders for the
    same seed, and each sample attributed to the method that ran between its two clock reads."""
    names = [f"m{i}" for i in range(6)]

    def rounds(seed):
        log = []
        monkeypatch.setattr(latency, "_clock", FakeClock(log))
        out = measure_latency(_recorders(log, names), repeats=20, warmup=1, order_seed=seed)
        timed = [e for e in log[len(names):] if e != "clock"]
        return [timed[i:i + len(names)] for i in range(0, len(timed), len(names))], out, log

    orders, out, log = rounds(0)
    assert len(orders) == 20 and all(sorted(o) == names for o in orders)
    assert len({tuple(o) for o in orders}) > 10
    assert len({o[0] for o in orders}) > 1                          # not always the same method first
    assert rounds(0)[0] == orders and rounds(1)[0] != orders
    timed = log[len(names):]
    assert all(timed[i] == "clock" and timed[i + 2] == "clock" for i in range(0, len(timed), 3))
    assert all(r["repeats"] == 20 for r in out.values())


def test_no_warmup_and_single_repeat(monkeypatch):
    log = []
    monkeypatch.setattr(latency, "_clock", FakeClock(log))
    out = measure_latency(_recorders(log, ["a"]), repeats=1, warmup=0)
    assert log == ["clock", "a", "clock"]
    assert out["a"]["median_ms"] == out["a"]["iqr_ms"] + out["a"]["min_ms"] == out["a"]["p90_ms"] == 0.0


def test_spread_statistics_from_a_driven_clock(monkeypatch):
    """Samples 1..10 ms (the stand-in clock advances 1, 2, ..., 10 ms during the calls): median 5.5,
    min 1, max 10, p10 1.9 and p90 9.1 (inclusive method), IQR 8.25 - 2.75 (exclusive, as before)."""
    clock = FakeClock([])
    monkeypatch.setattr(latency, "_clock", clock)
    durations = iter(range(1, 11))

    def work():
        clock.t += next(durations) * 1e-3

    r = measure_latency({"w": work}, repeats=10, warmup=0)["w"]
    assert r["median_ms"] == pytest.approx(5.5)
    assert (r["min_ms"], r["max_ms"]) == (pytest.approx(1.0), pytest.approx(10.0))
    assert (r["p10_ms"], r["p90_ms"]) == (pytest.approx(1.9), pytest.approx(9.1))
    assert r["iqr_ms"] == pytest.approx(8.25 - 2.75)


def test_runs_under_inference_mode():
    seen = []
    measure_latency({"m": lambda: seen.append(torch.is_inference_mode_enabled())}, repeats=2, warmup=1)
    assert seen == [True] * 3


@pytest.mark.parametrize("repeats, warmup", [(0, 3), (-1, 0), (3, -1)])
def test_bad_counts_are_config_errors(repeats, warmup):
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency({"m": lambda: None}, repeats=repeats, warmup=warmup)


def test_cpu_path_never_synchronises(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("torch.cuda.synchronize called on CPU")
    monkeypatch.setattr(torch.cuda, "synchronize", boom)
    measure_latency({"m": lambda: None}, repeats=2, warmup=1, device="cpu")


# ---- CUDA branch, through the stand-ins -------------------------------------------------------------

def test_cuda_synchronises_around_every_timed_call(fake_cuda):
    log, _, state = fake_cuda
    out = measure_latency(_recorders(log, ["a", "b"]), repeats=3, warmup=1, device="cuda", order_seed=None)
    rounds = CUDA_MIN_WARMUP                                         # warmup=1 is raised to the CUDA minimum
    warm = ["sync"] + [e for n in ["a", "b"] * rounds for e in (n, "sync")]
    assert log[:len(warm)] == warm                                   # sync first, then after each warm-up call
    assert "clock" not in log[:len(warm)]
    timed = log[len(warm):]
    # clock starts after a sync and stops only after the call's work is synchronised
    assert timed == [e for n in ["a", "b"] * 3 for e in ("sync", "clock", n, "sync", "clock")]
    assert all(d == torch.device("cuda", 0) for d in state["synced"])
    for r in out.values():
        assert set(r) == KEYS
        assert r["device"] == "cuda:0" and r["device_name"] == "Fake GPU" and r["warmup"] == rounds


def test_cuda_sample_includes_kernel_time(fake_cuda):
    """The stand-in synchronize 'waits' 2 ms for queued kernels; the call itself returns at once (an
    asynchronous launch). The samples must include those 2 ms (stand-in clock, not wall time)."""
    _, _, state = fake_cuda
    state["kernel_s"] = 2e-3
    r = measure_latency({"launch": lambda: None}, repeats=4, warmup=0, device="cuda:0")["launch"]
    assert r["median_ms"] == pytest.approx(2.0) and r["min_ms"] == pytest.approx(2.0)
    assert r["iqr_ms"] == pytest.approx(0.0, abs=1e-9)


def test_cuda_keeps_a_larger_warmup(fake_cuda):
    log, _, _ = fake_cuda
    out = measure_latency(_recorders(log, ["a"]), repeats=1, warmup=CUDA_MIN_WARMUP + 2, device="cuda")
    assert out["a"]["warmup"] == CUDA_MIN_WARMUP + 2
    assert [e for e in log if e == "a"] == ["a"] * (CUDA_MIN_WARMUP + 3)


# ---- resolve_device ---------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_resolve_cuda_absent_is_one_line_config_error(name):
    with pytest.raises(ConfigError) as e:
        resolve_device(name)
    msg = str(e.value)
    assert "\n" not in msg and repr(name) in msg and "available here: cpu" in msg


def test_resolve_cpu_and_none():
    assert resolve_device("cpu") == resolve_device(None) == resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name, match", [("gpu", "not a device name"), ("mps", "cpu or cuda"), ("", "not a device")])
def test_resolve_rejects_other_names(name, match):
    with pytest.raises(ConfigError, match=match):
        resolve_device(name)


def test_resolve_cuda_with_stand_in(fake_cuda):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"'cuda:2': this machine has 1 CUDA device\(s\); available here: cpu, cuda:0"):
        resolve_device("cuda:2")


def test_measure_latency_on_absent_cuda_fails_before_any_call(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []
    with pytest.raises(ConfigError, match="CUDA was asked for"):
        measure_latency({"m": lambda: calls.append(1)}, repeats=2, device="cuda")
    assert calls == []


# ---- flop counts and GFLOP/s --------------------------------------------------------------------------

def test_matmul_flops_formula():
    assert matmul_flops(1, 1, 1) == 2                                        # one real MAC
    assert matmul_flops(1, 1, 1, dtype=torch.complex64) == 8                 # one complex MAC
    assert matmul_flops(1024, 1024, 1024) == 2 * 1024 ** 3
    assert matmul_flops(3, 5, 7, batch=2, dtype=torch.float64) == 2 * 2 * 3 * 5 * 7
    # the workload-like product (256, 16, 64) @ (256, 64, 1), complex64
    assert matmul_flops(16, 64, 1, batch=256, dtype=torch.complex64) == 8 * 256 * 16 * 64 == 2_097_152
    assert matmul_flops(2, 3, 4, dtype=torch.complex128) == 4 * matmul_flops(2, 3, 4, dtype=torch.float64)


def test_complex_mac_is_eight_real_flops_by_construction():
    """A complex product done with real matmuls takes 4 real products (ac, bd, ad, bc), i.e. 4x the real
    flop count for the multiplies, and its value equals the complex matmul."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 5, dtype=torch.complex128, generator=g)
    B = torch.randn(5, 3, dtype=torch.complex128, generator=g)
    a, b, c, d = A.real, A.imag, B.real, B.imag
    real_way = torch.complex(a @ c - b @ d, a @ d + b @ c)
    assert torch.allclose(real_way, A @ B)
    assert 4 * matmul_flops(4, 5, 3, dtype=torch.float64) == matmul_flops(4, 5, 3, dtype=torch.complex128)


def test_matmul_flops_rejects_empty_sizes():
    with pytest.raises(ConfigError):
        matmul_flops(0, 4, 4)


def test_gflops_and_fraction_arithmetic():
    assert gflops(2e9, 1000.0) == pytest.approx(2.0)
    assert gflops(2 * 1024 ** 3, 1.0) == pytest.approx(2 * 1024 ** 3 / 1e6)
    assert fraction_of_peak(5.0, 20.0) == pytest.approx(0.25)
    assert math.isnan(fraction_of_peak(5.0, 0.0)) and math.isnan(fraction_of_peak(5.0, float("nan")))


def test_matmul_gflops_divides_flops_by_the_median(monkeypatch):
    """With measure_latency stood in (median 4 ms), the GFLOP/s is the exact flop count over 4 ms, and
    the device reaches measure_latency resolved."""
    seen = {}

    def fake_measure(fns, repeats, warmup, device):
        seen.update(repeats=repeats, warmup=warmup, device=device)
        fns["matmul"]()
        return {"matmul": {"median_ms": 4.0}}

    monkeypatch.setattr(latency, "measure_latency", fake_measure)
    got = matmul_gflops(16, 64, 1, batch=256, dtype=torch.complex64, repeats=7, warmup=2)
    assert got == pytest.approx(8 * 256 * 16 * 64 / 4e-3 / 1e9)
    assert seen == {"repeats": 7, "warmup": 2, "device": torch.device("cpu")}


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_matmul_peak_gflops_is_positive_and_finite(dtype):
    v = matmul_peak_gflops("cpu", dtype, n=64, repeats=3, warmup=1)
    assert math.isfinite(v) and v > 0


def test_batched_complex_gflops_is_positive_and_finite():
    v = matmul_gflops(16, 64, 1, batch=256, device="cpu", dtype=torch.complex64, repeats=3, warmup=1)
    assert math.isfinite(v) and v > 0


def test_peak_report_keys():
    r = peak_report("cpu", n=32, batched_shape=(8, 4, 8, 1), repeats=2, warmup=1)
    assert r["device"] == "cpu" and r["device_name"] == "cpu" and r["square_n"] == 32
    assert r["batched_shape"] == [8, 4, 8, 1]
    for k in ("square_float32_gflops", "square_complex64_gflops", "batched_complex64_gflops"):
        assert math.isfinite(r[k]) and r[k] > 0


def test_default_peak_size():
    assert latency.default_peak_size("cpu") == 1024
