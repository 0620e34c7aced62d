"""Drift monitoring: statistics, alerts, a trigger that fires once per model version (also across
restarts), synthetic drift sources."""
import json

import pytest
import torch

from autounfold.build import build_model
from autounfold.channels import CorrelatedRayleigh, IIDRayleigh
from autounfold.config import parse_config
from autounfold.errors import ConfigError
from autounfold.monitoring import (EventLog, MonitorConfig, compute_baseline, covariance_shift, drifting_windows,
                                   estimate_angular_spread, monitor_windows, parameter_drift, transmit_covariance)
from autounfold.monitoring.monitor import Baseline, parse_synthetic


@pytest.fixture(scope="module")
def model():
    cfg = parse_config({"problem": {"channel": {"n_tx": 16, "n_rx": 4, "angular_spread_deg": 15.0}},
                        "model": {"num_layers": 4}})
    return build_model(cfg)


def test_covariance_statistics():
    base = transmit_covariance(CorrelatedRayleigh(16, 4, angular_spread_deg=15).sample(2048, 0).H)
    same = transmit_covariance(CorrelatedRayleigh(16, 4, angular_spread_deg=15).sample(2048, 1).H)
    wide = transmit_covariance(CorrelatedRayleigh(16, 4, angular_spread_deg=40).sample(2048, 1).H)
    assert covariance_shift(same, base) < 0.1 < 0.15 < covariance_shift(wide, base)
    assert estimate_angular_spread(base) == pytest.approx(15.0, abs=1.0)
    assert estimate_angular_spread(wide) == pytest.approx(40.0, abs=1.5)
    iid = transmit_covariance(IIDRayleigh(16, 4).sample(2048, 0).H)
    assert covariance_shift(iid, base) > 0.15


def test_parameter_drift():
    assert parameter_drift({"step": [1.0, -2.0]}, {"step": [1.1, -2.0]}) == pytest.approx(0.1)
    assert parameter_drift({"step": [1.0, -2.0]}, {"step": [1.0, -1.0]}) == pytest.approx(0.5)


def test_event_log_survives_restarts_and_torn_lines(tmp_path):
    log = EventLog(tmp_path / "ev.jsonl")
    log.append({"kind": "trigger", "key": "m:v1:covariance_shift"})
    with open(tmp_path / "ev.jsonl", "a") as fh:
        fh.write('{"kind": "alert", "trunc')                 # a crash mid-write
    again = EventLog(tmp_path / "ev.jsonl")
    assert again.fired("m:v1:covariance_shift") and not again.fired("m:v2:covariance_shift")


def test_drift_triggers_once_per_version_after_patience(model, tmp_path):
    cfg = MonitorConfig(window=256, trigger_patience=2, baseline_channels=1024)
    baseline = compute_baseline(model, 1024)
    log = EventLog(tmp_path / "events.jsonl")
    fired = []
    spec = parse_synthetic("synthetic:angular_spread=15->40,windows=6,at=2")
    recs = monitor_windows(model, drifting_windows(model, spec, 256), cfg, baseline, log, "bf:v1",
                           on_trigger=lambda e: fired.append(e) or {"ok": True})
    assert [r["alerts"] != [] for r in recs][:2] == [False, False]
    assert all("covariance_shift" in r["alerts"] for r in recs[2:])
    assert [("trigger" in r) for r in recs] == [False, False, False, True, False, False]    # patience 2
    assert len(fired) == 1 and fired[0]["angular_spread_estimate"] == pytest.approx(40, abs=2)
    assert all(90 < r["shadow_pct"] <= 100.0001 and r["shadow_samples"] >= 1 for r in recs)
    # a restarted monitor on the same version does not trigger again; a new version may
    recs = monitor_windows(model, drifting_windows(model, spec, 256), cfg, baseline, EventLog(log.path), "bf:v1",
                           on_trigger=lambda e: fired.append(e))
    assert len(fired) == 1 and not any("trigger" in r for r in recs)
    monitor_windows(model, drifting_windows(model, spec, 256), cfg, baseline, EventLog(log.path), "bf:v2",
                    on_trigger=lambda e: fired.append(e))
    assert len(fired) == 2
    kinds = [json.loads(line)["kind"] for line in log.path.read_text().splitlines()]
    assert kinds.count("trigger") == 2 and kinds.count("trigger_done") == 2 and "alert" in kinds


def test_baseline_round_trip_and_parameter_alarm(model, tmp_path):
    b = compute_baseline(model, 512)
    torch.save(b.to_state(), tmp_path / "b.pt")
    back = Baseline.from_state(torch.load(tmp_path / "b.pt", weights_only=True))
    assert torch.equal(back.R_tx, b.R_tx) and back.layer_parameters == b.layer_parameters
    tuned = dict(back.layer_parameters)
    tuned["step"] = [v * 1.5 for v in tuned["step"]]               # as if fine-tuned online
    back.layer_parameters = tuned
    recs = monitor_windows(model, drifting_windows(model, {"from": 15, "to": 15, "windows": 1, "at": None}, 256),
                           MonitorConfig(window=256), back, EventLog(tmp_path / "e.jsonl"), "bf:v1")
    assert "parameter_drift" in recs[0]["alerts"] and recs[0]["parameter_drift"] == pytest.approx(1 / 3, rel=1e-3)


@pytest.mark.parametrize("text, message", [
    ("synthetic:windows=3", "needs angular_spread"),
    ("synthetic:angular_spread=15->40,speed=2", "unknown part 'speed=2'"),
    ("synthetic:angular_spread=15->40,windows=x", "windows must be an integer"),
])
def test_synthetic_source_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_synthetic(text)
