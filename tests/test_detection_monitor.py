"""Drift monitoring of MIMO detectors: the receive-side statistic, the SER shadow metric against LMMSE,
a UMi -> UMa drift (3GPP sources through Sionna) that alarms and is named, fresh UMi users that do not,
recorded CSI windows, and one-line errors. 4 x 4 QPSK, pools of 256 user terminals, 30 training steps."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

import autounfold
from autounfold.build import build_model
from autounfold.channels.base import ChannelBatch
from autounfold.config import load_config
from autounfold.errors import ConfigError, InputError
from autounfold.monitoring import EventLog, MonitorConfig, compute_baseline, drifting_windows, monitor_windows
from autounfold.monitoring.monitor import Baseline, channel_sources, parse_synthetic, window_line
from autounfold.problems.detection import lmmse, sign_test
from autounfold.seeding import generator
from autounfold.training import train

UMI = ["model.num_layers=2", "problem.channel.model=umi", "problem.channel.pool=256"]
WINDOW = 256


@pytest.fixture(scope="module")
def trained():
    """A DeepSIC detector trained a few steps on UMi (pool_seed 0) and its baseline."""
    torch.set_num_threads(1)
    cfg = load_config("preset:deepsic", UMI + ["training.steps=30", "training.validate_every=15",
                                               "training.validation_batch=256", "training.batch_size=64",
                                               "training.refine=null"])
    model = build_model(cfg)
    train(model, cfg.training, seed=0, progress=False)
    model.eval()
    return model, cfg, compute_baseline(model, 1024)


def _run(model, baseline, spec, tmp_path, ref="det:v1", cfg=None, fired=None):
    windows = drifting_windows(model, parse_synthetic(spec), WINDOW)
    return monitor_windows(model, windows, cfg or MonitorConfig(window=WINDOW), baseline, EventLog(tmp_path / "ev.jsonl"),
                           ref, on_trigger=(lambda e: fired.append(e) or {"ok": True}) if fired is not None else None)


def test_fresh_umi_users_raise_no_alarm(trained, tmp_path):
    model, _, baseline = trained
    fired = []
    # the traffic's users come from another pool than the training users (pool_seed 1 by default, then 7)
    recs = _run(model, baseline, "synthetic:channel=umi->umi,windows=6", tmp_path, fired=fired)
    recs += _run(model, baseline, "synthetic:channel=umi->umi,windows=4,pool_seed=7", tmp_path, fired=fired)
    assert not fired and not any("trigger" in r for r in recs)
    assert all(r["alerts"] == [] for r in recs), [r["alerts"] for r in recs]
    assert max(r["covariance_shift"] for r in recs) < 0.08
    # the detector makes fewer symbol errors than LMMSE on every window (it unfolds SIC)
    assert all(r["shadow_ser"] < r["shadow_reference_ser"] and r["shadow_pct"] > 120 for r in recs)
    assert all(r["shadow_samples"] == WINDOW for r in recs)           # detection's default: every served symbol


def test_uma_traffic_alarms_triggers_once_and_names_the_channel_model(trained, tmp_path):
    model, _, baseline = trained
    fired = []
    recs = _run(model, baseline, "synthetic:channel=umi->uma,windows=5,at=2", tmp_path, fired=fired)
    assert [("covariance_shift" in r["alerts"]) for r in recs] == [False, False, True, True, True]
    assert min(r["covariance_shift"] for r in recs[2:]) > 0.2 > 0.08 > max(r["covariance_shift"] for r in recs[:2])
    assert [("trigger" in r) for r in recs] == [False, False, False, True, False]          # patience 2
    assert len(fired) == 1
    event = fired[0]
    assert event["drift_changes"] == {"channel.model": "uma"}
    assert event["research_set"] == ["base.problem.channel.model=uma"]
    assert "angular_spread_estimate" not in event and all("angular_spread_estimate" not in r for r in recs)   # not estimated for detection
    # a restarted monitor on the same version does not trigger again
    again = _run(model, baseline, "synthetic:channel=umi->uma,windows=5,at=2", tmp_path, fired=fired)
    assert len(fired) == 1 and not any("trigger" in r for r in again)
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert kinds.count("trigger") == 1 and kinds.count("trigger_done") == 1
    # a population that moves over from UMi to UMa: the shift grows with the UMa share
    ramp = _run(model, baseline, "synthetic:channel=umi->uma,windows=3", tmp_path, ref="det:v2")
    shifts = [r["covariance_shift"] for r in ramp]
    assert shifts[0] < 0.08 and shifts[0] < shifts[1] < shifts[2] and shifts[2] > 0.2


def test_recorded_csi_windows_from_uma(trained, tmp_path):
    from autounfold.channels.parquet import ParquetSource, write_csi
    model, _, baseline = trained
    _, uma = channel_sources(model, parse_synthetic("synthetic:channel=umi->uma,pool_seed=3"))
    path = write_csi(tmp_path / "uma.parquet", uma.sample(2 * WINDOW, generator(5, "csi")))
    recs = monitor_windows(model, ParquetSource([path]).windows(WINDOW), MonitorConfig(window=WINDOW), baseline,
                           EventLog(tmp_path / "ev.jsonl"), "det:v1")
    assert all("covariance_shift" in r["alerts"] for r in recs) and "trigger" in recs[1]


def test_ser_shadow_metric_equals_a_direct_computation(trained, tmp_path):
    model, cfg, baseline = trained
    p = model.problem
    spec = parse_synthetic("synthetic:channel=umi->umi,windows=2")
    for fraction in (None, 0.5):
        mcfg = MonitorConfig(window=WINDOW, shadow_fraction=fraction, seed=3)
        recs = monitor_windows(model, drifting_windows(model, spec, WINDOW), mcfg, baseline, EventLog(tmp_path / "e.jsonl"),
                               "det:v1")
        for w, (rec, window) in enumerate(zip(recs, drifting_windows(model, spec, WINDOW))):
            inst = p.traffic(window, generator(3, "traffic", w))            # what the monitor served
            mask = torch.rand(WINDOW, generator=generator(3, "shadow", w)) < (fraction or 1.0)
            with torch.no_grad():
                wrong = p.hard(model.run(inst)) != inst.s
            wrong_ref = p.hard(lmmse(p, inst)) != inst.s
            assert rec["ser"] == pytest.approx(float(wrong.double().mean()), abs=1e-12)
            assert rec["shadow_samples"] == int(mask.sum())
            assert rec["shadow_ser"] == pytest.approx(float(wrong[mask].double().mean()), abs=1e-12)
            assert rec["shadow_reference_ser"] == pytest.approx(float(wrong_ref[mask].double().mean()), abs=1e-12)
            e, e_ref = int(wrong[mask].sum()), int(wrong_ref[mask].sum())
            assert rec["shadow_pct"] == pytest.approx(100.0 * (e_ref + 1) / (e + 1))
            assert "SER" in window_line(rec) and "LMMSE" in window_line(rec)
    # the registration baseline carries the same numbers on the training distribution
    assert baseline.shadow["shadow_reference_ser"] > baseline.shadow["ser"] > 0
    assert recs[0]["shadow_baseline_pct"] == pytest.approx(baseline.shadow["shadow_pct"])
    back = Baseline.from_state(baseline.to_state())
    assert back.shadow == baseline.shadow and torch.equal(back.R_tx, baseline.R_tx)


class _Wrapped:
    """The trained model with its decisions changed by ``fn(problem, inst, x)``."""

    def __init__(self, model, fn):
        self.model, self.fn, self.problem, self.config = model, fn, model.problem, model.config

    def run(self, inst):
        return self.fn(self.problem, inst, self.model.run(inst))

    def parameters(self):
        return self.model.parameters()

    def scalar_parameters(self):
        return self.model.scalar_parameters()


def _lmmse_with_errors(share):
    """LMMSE's log-probabilities with the decision of a fixed ``share`` of the symbols moved to the next point."""
    def fn(problem, inst, x):
        ref = lmmse(problem, inst)
        flip = torch.rand(ref.shape[:2], generator=generator(0, "flip")) < share
        return torch.where(flip.unsqueeze(-1), ref.roll(1, -1), ref) + 0 * x.sum()
    return fn


def test_shadow_alarm_rings_when_the_detector_loses_to_lmmse_and_not_on_noise(trained, tmp_path):
    model, _, baseline = trained
    spec = "synthetic:channel=umi->umi,windows=2"
    # decisions moved to a neighbouring point on every symbol: far worse than LMMSE
    broken = _run(_Wrapped(model, lambda p, inst, x: x.roll(1, -1)), baseline, spec, tmp_path)
    assert all("shadow_pct" in r["alerts"] and r["shadow_pct"] < 20 and r["shadow_p_value"] < 1e-6 for r in broken)
    # LMMSE itself: as many errors as the reference, never an alarm
    same = _run(_Wrapped(model, lambda p, inst, x: lmmse(p, inst) + 0 * x.sum()), baseline, spec, tmp_path)
    assert all(r["shadow_pct"] == 100.0 and r["shadow_p_value"] == 1.0 and "shadow_pct" not in r["alerts"] for r in same)
    # LMMSE with 4 % of its decisions spoiled: significant on 256 channels (1024 symbols) ...
    worse = _run(_Wrapped(model, _lmmse_with_errors(0.04)), baseline, spec, tmp_path)
    assert all(r["shadow_pct"] < 97 and r["shadow_p_value"] < 0.01 and "shadow_pct" in r["alerts"] for r in worse)
    # ... but not on 4 channels (16 symbols), where the same ratio is noise
    small = monitor_windows(_Wrapped(model, _lmmse_with_errors(0.1)), drifting_windows(model, parse_synthetic(spec), 4),
                            MonitorConfig(window=8), baseline, EventLog(tmp_path / "s.jsonl"), "det:v1")
    assert all(r["shadow_p_value"] > 0.01 and "shadow_pct" not in r["alerts"] for r in small)


def test_sign_test_is_the_exact_binomial_tail():
    for worse, n in [(0, 0), (0, 5), (3, 5), (5, 5), (9, 12), (40, 60)]:
        exact = sum(math.comb(n, k) for k in range(worse, n + 1)) / 2 ** n if n else 1.0
        assert sign_test(worse, n) == pytest.approx(min(exact, 1.0), rel=1e-9)


def test_receive_statistic_and_loss_of_the_detection_hooks(trained):
    model, _, _ = trained
    p = model.problem
    inst = p.sample(64, generator(2))
    rows = p.monitor_rows(inst)
    assert rows.shape == (64 * 4, 3) and rows.dtype == torch.float64
    assert ((rows >= 0) & (rows <= 1 + 1e-9)).all()
    # a plane wave (one user, one direction) is fully coherent: |a(l)| = (N - l) / N
    steer = torch.exp(1j * math.pi * 0.3 * torch.arange(4)).to(torch.complex64)
    plane = inst[:1]
    plane.H = (steer.view(1, 4, 1) * torch.ones(1, 1, 4, dtype=torch.complex64)) * 2.0
    assert torch.allclose(p.monitor_rows(plane), torch.tensor([[0.75, 0.5, 0.25]], dtype=torch.float64).expand(4, 3))
    with torch.no_grad():
        x = model.run(inst)
    assert torch.allclose(p.monitor_loss(x, inst), p.supervised_loss(x, inst, inst.s))


@pytest.mark.parametrize("text, message", [
    ("synthetic:channel=umi->umx,windows=3", "unknown channel model 'umx'; allowed: "),
    ("synthetic:channel=umi->uma,angular_spread=15->40", "give one of angular_spread=A->B or channel=M1->M2"),
    ("synthetic:angular_spread=15->40,pool_seed=2", "pool_seed goes with channel=M1->M2"),
    ("synthetic:channel=umi->uma,windows=4,at=4", "at must be a window in 0..3"),
    ("synthetic:angular_spread=a->40", "angular_spread=A->B takes degrees"),
    ("synthetic:windows=3", "needs angular_spread=A->B (degrees) or channel=M1->M2"),
])
def test_synthetic_channel_source_errors(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")) as err:
        parse_synthetic(text)
    assert "\n" not in str(err.value)


def test_bad_windows_and_problems_are_one_line_errors(trained):
    model, _, _ = trained
    p = model.problem
    with pytest.raises(InputError, match=r"the window's H is 8 x 4 \(n_rx x users\); this model detects 4 users at 4"):
        p.traffic(ChannelBatch(torch.ones(2, 8, 4, dtype=torch.complex64), torch.ones(2), torch.zeros(2)), 0)
    nan = torch.ones(2, 4, 4, dtype=torch.complex64)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="H contains NaN or Inf"):
        p.traffic(ChannelBatch(nan, torch.ones(2), torch.zeros(2)), 0)
    with pytest.raises(InputError, match="noise_var must be finite and > 0"):
        p.traffic(ChannelBatch(torch.ones(2, 4, 4, dtype=torch.complex64), -torch.ones(2), torch.zeros(2)), 0)
    unlabelled = p.instance(*(lambda b: (b.y, b.H, b.noise_var))(p.sample(4, 0)))
    with pytest.raises(InputError, match="needs the sent symbols"):
        p.monitor_shadow(p.init(unlabelled), unlabelled, torch.ones(4, dtype=torch.bool), 97.0)
    hybrid = SimpleNamespace(config=SimpleNamespace(problem=SimpleNamespace(name="hybrid_precoding", channel=object())))
    with pytest.raises(ConfigError, match="problem 'hybrid_precoding' does not draw its channels from a problem.channel"):
        channel_sources(hybrid, parse_synthetic("synthetic:channel=umi->uma"))
    one = build_model(load_config("preset:deepsic", ["problem.n_rx=1", "problem.n_users=1"])).problem
    assert not one.is_monitored()
    with pytest.raises(InputError, match="needs n_rx >= 2"):
        one.monitor_rows(one.sample(2, 0))


def test_cli_monitor_on_a_registered_detector(trained, tmp_path, monkeypatch):
    """`autounfold monitor` end to end on a registered version (sqlite registry, baseline stored as a search
    registers it): UMa traffic alarms and triggers (re-search skipped), fresh UMi traffic does not; a bad
    source is one line on stderr, exit 2."""
    from typer.testing import CliRunner

    from autounfold.cli import app
    from autounfold.ops.search import BASELINE_FILE, drift_baseline
    from autounfold.registry import SearchTracker, register_model
    from autounfold.spaces import parse_spec

    model, cfg, _ = trained
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec({"name": "det", "base": {"problem": cfg.problem.model_dump(mode="json"),
                                               "model": cfg.model.model_dump(mode="json")},
                       "budget": {"num_samples": 2, "algorithm": "random"},
                       "space": {"model.num_layers": {"type": "int", "low": 1, "high": 3}}}, "det.yaml")
    tracker = SearchTracker.start(spec, uri)
    d = autounfold.save(model, tmp_path / "m", cfg)
    tracker.trial_result("t0", {}, {"step": 0})
    register_model("det", d, tracker.child_run("t0"), {}, tracking_uri=uri, alias="champion",
                   extra_files={BASELINE_FILE: drift_baseline(d)})
    runner = CliRunner()
    base = ["monitor", "--model", "det@champion", "--window", str(WINDOW), "--tracking-uri", uri, "--no-research",
            "--events", str(tmp_path / "ev.jsonl")]
    r = runner.invoke(app, base + ["--source", "synthetic:channel=umi->uma,windows=4,at=1"])
    assert r.exit_code == 0, r.output
    assert "ALERT covariance_shift" in r.output and "1 trigger(s)" in r.output and "LMMSE" in r.output
    log = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    [trigger] = [e for e in log if e["kind"] == "trigger"]
    [done] = [e for e in log if e["kind"] == "trigger_done"]
    assert trigger["model"] == "det:v1" and trigger["research_set"] == ["base.problem.channel.model=uma"]
    assert done["outcome"] == {"skipped": "--no-research"}
    r = runner.invoke(app, base + ["--source", "synthetic:channel=umi->umi,windows=3"])
    assert r.exit_code == 0 and "ALERT" not in r.output and "0 trigger(s)" in r.output, r.output
    r = runner.invoke(app, base + ["--source", "synthetic:channel=umi->nope"])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "unknown channel model 'nope'" in lines[0], r.stderr
