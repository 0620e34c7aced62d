"""Operations on detection models: ``csi write`` draws detection CSI (H (n_rx, users), the layout the
detection monitor reads back), ``promote``'s default tolerance is the problem's (SER for detection) and an
explicit one wins, and the monitor / re-search lines say what a detection re-search re-targets (the
channel model) without an angular-spread "estimate" that is only the configured spread. The precoding
problems' behaviour and text are unchanged. Small untrained models: 8 receive antennas x 4 users (the
two sides of H differ), a UMi pool of 32 user terminals."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import autounfold
from autounfold.build import build_model, build_problem
from autounfold.channels.parquet import ParquetSource, read_csi
from autounfold.cli import app
from autounfold.config import load_config
from autounfold.monitoring import EventLog, MonitorConfig, compute_baseline, monitor_windows
from autounfold.monitoring.monitor import window_line
from autounfold.monitoring.monitor import estimates_angular_spread
from autounfold.ops.research import research_changes, research_line, research_target
from autounfold.plugins import PROBLEMS
from autounfold.problems.detection import DetectionBatch
from autounfold.seeding import generator
from autounfold.spaces.spec import SPACE_FILE

UMI8X4 = ["problem.n_rx=8", "problem.n_users=4", "problem.channel.model=umi", "problem.channel.pool=32",
          "model.num_layers=2"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def _register(tmp_path, name, cfg, model, tag, alias="challenger", baseline=False):
    """Register ``model`` as a new version of ``name`` (sqlite registry under tmp_path)."""
    from autounfold.ops.search import BASELINE_FILE, drift_baseline
    from autounfold.registry import SearchTracker, register_model
    from autounfold.spaces import parse_spec
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec({"name": name, "base": {"problem": cfg.problem.model_dump(mode="json"),
                                              "model": cfg.model.model_dump(mode="json")},
                       "budget": {"num_samples": 2, "algorithm": "random"},
                       "space": {"model.num_layers": {"type": "int", "low": 1, "high": 3}}}, f"{name}.yaml")
    tracker = SearchTracker.start(spec, uri)
    d = autounfold.save(model, tmp_path / tag, cfg)
    tracker.trial_result(tag, {}, {"step": 0})
    extra = {BASELINE_FILE: drift_baseline(d)} if baseline else None
    register_model(name, d, tracker.child_run(tag), {}, tracking_uri=uri, alias=alias, extra_files=extra)
    return uri


# ---- 1. csi write for detection ------------------------------------------------------------------------
def test_csi_write_draws_detection_csi_that_the_monitor_reads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = tmp_path / "umi.parquet"
    args = ["csi", "write", "--config", "preset:deepsic", "--out", str(out), "--rows", "24", "--seed", "3",
            "--cell-id", "c7"]
    r = runner.invoke(app, args + [a for s in UMI8X4[:4] for a in ("--set", s)])
    assert r.exit_code == 0, r.output
    assert "wrote 24 channels (umi, 8 x 4, n_rx x users)" in r.output
    r = runner.invoke(app, ["csi", "inspect", str(out)])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert (info["rows"], info["n_rx"], info["n_tx"], info["power"], info["cells"]) == (24, 8, 4, 1.0, ["c7"])
    assert 0.0 <= info["snr_db"][0] <= info["snr_db"][1] <= 20.0          # the preset's SNR range

    # the same channels the problem's source draws (generator(seed, "csi")), in its (n_rx, users) layout
    cfg = load_config("preset:deepsic", UMI8X4)
    model = build_model(cfg)
    p = model.problem
    want = p.source.sample(24, generator(3, "csi"))
    got = read_csi(out).batch
    assert got.H.shape == (24, 8, 4) and torch.allclose(got.H, want.H.to(torch.complex64))
    assert torch.allclose(got.noise_var, want.noise_var)

    # the monitor's Parquet path: windows of H (B, n_rx, users) -> served traffic -> a record per window
    windows = list(ParquetSource([out]).windows(12))
    assert [w.H.shape for w in windows] == [(12, 8, 4), (12, 8, 4)]
    inst = p.traffic(windows[0], 0)
    assert isinstance(inst, DetectionBatch) and inst.y.shape == (12, 8) and inst.s.shape == (12, 4)
    model.eval()
    baseline = compute_baseline(model, 256)
    recs = monitor_windows(model, ParquetSource([out]).windows(12), MonitorConfig(window=12), baseline,
                           EventLog(tmp_path / "ev.jsonl"), "det:v1")
    assert [r["channels"] for r in recs] == [12, 12] and all(0 <= r["ser"] <= 1 for r in recs)

    # end to end: `autounfold monitor` on a registered detector reads the file; no AS~ in its lines
    uri = _register(tmp_path, "det", cfg, model, "m", alias="champion", baseline=True)
    r = runner.invoke(app, ["monitor", "--model", "det@champion", "--source", str(out), "--window", "12",
                            "--tracking-uri", uri, "--no-research", "--events", str(tmp_path / "m.jsonl")])
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("window")]
    assert len(lines) == 2 and all("LMMSE" in line and "AS~" not in line for line in lines), r.output
    from mlflow import MlflowClient
    client = MlflowClient(uri, registry_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("autounfold-monitoring").experiment_id])
    assert "covariance_shift" in run.data.metrics and "angular_spread_estimate" not in run.data.metrics


def test_csi_write_for_precoding_is_unchanged_and_other_problems_are_refused(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["csi", "write", "--out", str(tmp_path / "bf.parquet"), "--rows", "8",
                            "--set", "problem.channel.n_tx=16", "--set", "problem.channel.n_rx=4"])
    assert r.exit_code == 0, r.output
    assert f"wrote 8 channels (correlated_rayleigh, 4 x 16) to {tmp_path / 'bf.parquet'}" in r.output.replace("\n", "")
    assert read_csi(tmp_path / "bf.parquet").batch.H.shape == (8, 4, 16)
    for preset in ("preset:hybrid", "preset:lista"):
        r = runner.invoke(app, ["csi", "write", "--out", str(tmp_path / "x.parquet"), "--config", preset])
        assert r.exit_code == 2 and "does not draw channels" in r.output, r.output
    assert not (tmp_path / "x.parquet").exists()


# ---- 2. promote's default tolerance ---------------------------------------------------------------------
def test_promote_tolerance_is_the_problems_and_an_explicit_one_wins(tmp_path):
    from autounfold.ops.promote import promote
    assert PROBLEMS.get("detection").promote_tolerance == 0.002
    assert PROBLEMS.get("decoding").promote_tolerance == 0.005                # half a point of BLER
    for name in PROBLEMS.names():
        if name not in ("detection", "decoding"):                          # decoding declares its own (BLER)
            assert PROBLEMS.get(name).promote_tolerance == 0.05, name      # today's default, unchanged

    def det(layers):
        cfg = load_config("preset:deepsic", [f"model.num_layers={layers}"])
        return cfg, build_model(cfg)
    cfg, m1 = det(1)
    uri = _register(tmp_path, "det", cfg, m1, "v1")
    first = promote("det", tracking_uri=uri)
    assert first["decision"] == "promote" and first["tolerance"] is None and first["tolerance_from"] == "problem"
    canary = {"canary": 0.5, "batches": 10, "batch_size": 16}
    cfg, m2 = det(2)
    _register(tmp_path, "det", cfg, m2, "v2")
    rec = promote("det", tracking_uri=uri, **canary)
    assert rec["tolerance"] == 0.002 and rec["tolerance_from"] == "problem"
    assert "tolerance 0.002" in rec["reason"]
    from mlflow import MlflowClient
    assert MlflowClient(uri, registry_uri=uri).get_run(rec["run_id"]).data.params["tolerance"] == "0.002"
    cfg, m3 = det(3)
    _register(tmp_path, "det", cfg, m3, "v3")
    r = CliRunner().invoke(app, ["promote", "det", "--canary", "0.5", "--batches", "10", "--batch-size", "16",
                                 "--tolerance", "1", "--tracking-uri", uri])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output[r.output.index("{"):])
    assert rec["tolerance"] == 1.0 and rec["tolerance_from"] == "caller" and rec["decision"] == "promote"   # SER <= 1


# ---- 3. what the monitor and the re-search say -----------------------------------------------------------
BF_REC = {"window": 3, "covariance_shift": 0.3125, "shadow_pct": 99.5, "angular_spread_estimate": 39.96,
          "grad_norm_ratio": 1.24, "alerts": ["covariance_shift"]}
DET_TRIGGER = {"kind": "trigger", "value": 0.2312, "threshold": 0.15, "angular_spread_estimate": 15.0,
               "drift_changes": {"channel.model": "uma"}, "research_set": ["base.problem.channel.model=uma"]}


def test_window_line_for_beamforming_is_unchanged():
    assert window_line(BF_REC) == ("window   3: cov shift 0.312  shadow 99.500%  AS~40.0 deg  grad x1.2  "
                                   "ALERT covariance_shift")
    # a beamforming trigger names no changes: its line is the same
    trig = {**BF_REC, "trigger": {"research_set": [], "angular_spread_estimate": 40.0}}
    assert window_line(trig) == window_line(BF_REC)
    assert window_line({**BF_REC, "alerts": []}) == "window   3: cov shift 0.312  shadow 99.500%  AS~40.0 deg  grad x1.2"


def test_window_line_for_detection_names_the_channel_model_and_no_spread():
    rec = {"window": 3, "covariance_shift": 0.2312, "shadow_pct": 180.0, "grad_norm_ratio": 1.0,
           "shadow_line": "SER 0.0500 vs LMMSE 0.0900 (180%)", "alerts": ["covariance_shift"], "trigger": DET_TRIGGER}
    line = window_line(rec)
    assert line == ("window   3: cov shift 0.231  shadow SER 0.0500 vs LMMSE 0.0900 (180%)  grad x1.0  "
                    "ALERT covariance_shift  TRIGGER re-search with base.problem.channel.model=uma")
    quiet = {k: v for k, v in rec.items() if k != "trigger"}
    quiet["alerts"] = []
    assert window_line(quiet) == "window   3: cov shift 0.231  shadow SER 0.0500 vs LMMSE 0.0900 (180%)  grad x1.0"


def test_research_line_says_what_is_retargeted():
    bf = {"kind": "trigger", "value": 0.3125, "threshold": 0.15, "angular_spread_estimate": 39.96,
          "drift_changes": {}, "research_set": []}
    assert research_line(bf, 16, "abc", Path("runs/x")) == (
        "trigger: covariance shift 0.312 > 0.15; re-searching at angular spread 40.0 deg (16 trials, warm start abc)"
        " -> runs/x")
    # an event from before drift_changes existed reads the same
    old = {k: v for k, v in bf.items() if k not in ("drift_changes", "research_set")}
    assert research_line(old, 16, None, "o") == research_line(bf, 16, None, "o")
    det = research_line(DET_TRIGGER, 3, None, "o", angular_spread=False)
    assert det == ("trigger: covariance shift 0.231 > 0.15; re-searching with base.problem.channel.model=uma "
                   "(3 trials, warm start none) -> o")
    assert "angular spread" not in det and "15.0" not in det
    nothing = research_target({**DET_TRIGGER, "drift_changes": {}, "research_set": []}, angular_spread=False)
    assert nothing == "with the version's own channel settings (no change named)"


def test_the_detection_research_changes_set_the_channel_model_not_the_spread(tmp_path):
    assert not estimates_angular_spread(build_problem(load_config("preset:deepsic").problem))
    for preset in ("preset:auto_pgd", "preset:mu_miso", "preset:hybrid"):
        assert estimates_angular_spread(build_problem(load_config(preset).problem)), preset
    space = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "detection.yaml").read_text())
    (tmp_path / SPACE_FILE).write_text(yaml.safe_dump(space))
    overrides = [*DET_TRIGGER["research_set"], "base.training.steps=60"]
    det = research_changes(tmp_path, DET_TRIGGER, 3, overrides, angular_spread=False)
    assert det == ["budget.num_samples=3", "budget.transfer=gated", "base.problem.channel.model=uma", "base.training.steps=60",
                   "budget.n_initial_points=2"]
    bf = research_changes(tmp_path, {**DET_TRIGGER, "research_set": []}, 3, [])
    assert bf[0] == "base.problem.channel.angular_spread_deg=15.0" and bf[1] == "budget.num_samples=3"
    # a base that sets the transmit coefficient directly would ignore the spread: the re-search clears it
    space["base"]["problem"]["channel"]["tx_rho"] = 0.3
    (tmp_path / SPACE_FILE).write_text(yaml.safe_dump(space))
    bf = research_changes(tmp_path, {**DET_TRIGGER, "research_set": []}, 3, [])
    assert bf[:3] == ["base.problem.channel.angular_spread_deg=15.0", "base.problem.channel.tx_rho=null", "budget.num_samples=3"]


def test_a_detection_re_search_runs_on_the_named_channel_model(tmp_path, monkeypatch):
    """``research_on_drift`` in this process (the search itself replaced): its spec has the trigger's channel
    model and the configured angular spread, and its line names the channel model."""
    from types import SimpleNamespace

    from rich.console import Console

    import autounfold.ops.research as research
    space = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "detection.yaml").read_text())
    space["base"]["problem"]["channel"]["angular_spread_deg"] = 30.0
    (tmp_path / SPACE_FILE).write_text(yaml.safe_dump(space))
    seen = {}

    def fake_search(spec, out, **kw):
        seen["spec"], seen["kw"] = spec, kw
        return SimpleNamespace(summary={"best": {"val_score": -0.05}}, run_id="r1", registered={"version": "2"})
    monkeypatch.setattr(research, "search", fake_search)
    console = Console(record=True, width=400)
    out = research.research_on_drift(tmp_path, "det", DET_TRIGGER, tmp_path / "runs", "w0", None, 3,
                                     [*DET_TRIGGER["research_set"], "base.training.steps=60"], console,
                                     angular_spread=False)
    channel = seen["spec"].base["problem"]["channel"]
    assert channel["model"] == "uma" and channel["angular_spread_deg"] == 30.0       # not the event's 15.0
    assert seen["spec"].base["training"]["steps"] == 60 and seen["kw"]["warm_start"] == "w0"
    assert out["angular_spread_deg"] is None and out["research_set"] == ["base.problem.channel.model=uma"]
    text = console.export_text()
    assert "re-searching with base.problem.channel.model=uma (3 trials, warm start w0)" in text
    assert "angular spread" not in text


def test_a_re_search_moves_the_training_batches_with_the_channel(tmp_path):
    """A space whose base trains on a changed problem (base.training.problem) with a key the trigger
    moves: the training batches move too (else the re-search validates on the new channel and trains
    on the old one); other training changes stay; a user's explicit training change wins."""
    space = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "detection.yaml").read_text())
    space["base"].setdefault("training", {})["problem"] = {"channel": {"model": "iid_rayleigh", "snr_db": [0.0, 20.0]}}
    (tmp_path / SPACE_FILE).write_text(yaml.safe_dump(space))
    changes = research_changes(tmp_path, DET_TRIGGER, 3, list(DET_TRIGGER["research_set"]), angular_spread=False)
    assert changes[-1].startswith("base.training.problem=")
    import json
    assert json.loads(changes[-1].split("=", 1)[1]) == {"channel.model": "uma", "channel.snr_db": [0.0, 20.0]}
    from autounfold.config import set_override
    from autounfold.spaces.spec import parse_spec
    data = yaml.safe_load((tmp_path / SPACE_FILE).read_text())
    for c in changes:
        set_override(data, c)
    spec = parse_spec(data, "re-search", check_space=False)
    assert spec.base_config().training_problem().channel.model == "uma"
    explicit = research_changes(tmp_path, DET_TRIGGER, 3, [*DET_TRIGGER["research_set"],
                                                            "base.training.problem.channel.model=cdl"], angular_spread=False)
    assert not any(c.startswith("base.training.problem=") for c in explicit)


def test_a_re_search_moves_the_refine_draw_with_the_channel(tmp_path):
    """The refine draw (base.training.refine.problem) moves with the channel like the training batches."""
    import json
    space = yaml.safe_load((Path(__file__).parents[1] / "search_spaces" / "detection.yaml").read_text())
    space["base"].setdefault("training", {})["refine"] = {"problem": {"channel": {"model": "iid_rayleigh"}}, "batch": 64}
    (tmp_path / SPACE_FILE).write_text(yaml.safe_dump(space))
    changes = research_changes(tmp_path, DET_TRIGGER, 3, list(DET_TRIGGER["research_set"]), angular_spread=False)
    moved = [c for c in changes if c.startswith("base.training.refine.problem=")]
    assert len(moved) == 1 and json.loads(moved[0].split("=", 1)[1]) == {"channel.model": "uma"}
    assert not any(c.startswith("base.training.problem=") for c in changes)
