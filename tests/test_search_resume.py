"""--resume after a crash, without a Ray cluster: the searcher rebuilt from the recorded trials when
Tune's saved searcher state is ahead of or behind its experiment state (search/resume.py), an
unreadable newest experiment state set aside, and the state sync's lock and publication order
(search/atomic_sync.py)."""
import json
import threading
import time
from types import SimpleNamespace

import pytest

from autounfold.errors import SearchError
from autounfold.search import atomic_sync
from autounfold.search.history import History
from autounfold.search.searchers import make_searcher
from autounfold.search.resume import ResumeContext, rebuild_searcher, set_aside_unreadable_states
from autounfold.spaces import parse_spec

SPEC = {
    "name": "resume-unit",
    "base": {"problem": {"channel": {"n_tx": 8, "n_rx": 4}},
             "training": {"steps": 6, "batch_size": 16, "validate_every": 3, "validation_batch": 32}},
    # hyperopt TPE and plain history insertion: the rebuild of its documents is what these tests probe
    "budget": {"num_samples": 12, "n_initial_points": 3, "max_concurrent": 2, "algorithm": "tpe", "transfer": "history"},
    "seed": 5,
    "space": {
        "model.num_layers": {"type": "int", "low": 2, "high": 6},
        "training.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "model.layer": {"type": "conditional", "options": {
            "signed": {"set": {"model.step_init": "chebyshev"}},
            "momentum": {"set": {"model.step_init": 1.0}, "space": {
                "model.momentum_init": {"type": "float", "low": 0.0, "high": 0.9}}}}},
    },
}
WARM = History([({"model.num_layers": 3, "training.lr": 0.02, "model.layer": "signed"}, 97.0),
                ({"model.num_layers": 5, "training.lr": 0.004, "model.layer": "momentum",
                  "model.layer/momentum/model.momentum_init": 0.5},
                 99.0)], "earlier")


@pytest.fixture
def spec():
    return parse_spec(json.loads(json.dumps(SPEC)), "resume-unit.yaml")


class Search:
    """What the runner hands Tune (SearchGenerator > ConcurrencyLimiter > TPE), driven by hand."""

    def __init__(self, spec, history=None):
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.search_generator import SearchGenerator

        self.spec = spec
        self.base, self.warm = make_searcher(spec, history, spec.budget.n_initial_points)
        self.limiter = ConcurrencyLimiter(self.base, max_concurrent=2)
        self.gen = SearchGenerator(self.limiter)
        self.gen._total_samples = spec.budget.num_samples
        self.gen._experiment = "the experiment"           # set by add_configurations in a real run
        self.configs = {}

    def suggest(self, trial_id):
        config = self.limiter.suggest(trial_id)
        assert config is not None, f"no suggestion for {trial_id} (live: {self.limiter.live_trials})"
        self.gen._counter += 1
        self.configs[trial_id] = config
        return config

    def complete(self, trial_id):
        self.limiter.on_trial_complete(trial_id, {"objective": objective(trial_id)})

    def run(self, ids):
        """Suggest and complete one after the other."""
        for t in ids:
            self.suggest(t)
            self.complete(t)
        return self

    def trial(self, trial_id, status="TERMINATED"):
        """Tune's restored trial (TERMINATED: it ended; anything else: Tune runs it again)."""
        result = {"objective": objective(trial_id)} if status == "TERMINATED" else {}
        return SimpleNamespace(trial_id=trial_id, status=status, config=self.configs[trial_id], last_result=result)

    def row(self, trial_id, status="ok"):
        return {"trial_id": trial_id, "status": status, "objective": objective(trial_id),
                "params": json.dumps(self.spec.flatten(self.configs[trial_id]), sort_keys=True)}

    def documents(self):
        return [(d["misc"]["vals"], d["result"].get("loss"), d["state"])
                for d in sorted(self.base._hpopt_trials._dynamic_trials, key=lambda d: d["tid"])]


def objective(trial_id):
    return 90.0 + int(trial_id[1:]) % 7


IDS = [f"t{i}" for i in range(8)]


def test_searcher_ahead_of_the_experiment_state_is_rebuilt_from_the_recorded_trials(spec):
    """Saved searcher: 6 suggested, 2 of them live; experiment state: the 4 that ended. Restored
    as saved, Tune would end after 6 (the budget is 12) and the 2 live ones would hold both slots."""
    crashed = Search(spec).run(IDS[:4])
    crashed.suggest("t4"), crashed.suggest("t5")             # saved as suggested and live, never recorded
    assert crashed.gen._counter == 6 and crashed.limiter.live_trials == {"t4", "t5"}
    trials = [crashed.trial(t) for t in IDS[:4]]
    rows = {t: crashed.row(t) for t in IDS[:2]}               # t2, t3 learned from Tune's last results

    report = rebuild_searcher(crashed.gen, trials, ResumeContext(spec, rows))
    assert report["saved_counter"] == 6 and report["counter"] == 4
    assert crashed.gen._counter == 4 and not crashed.gen.is_finished()
    assert crashed.limiter.live_trials == set() and crashed.limiter.num_unfinished_live_trials == 0
    assert crashed.base._live_trial_mapping == {}

    # exactly the searcher of a search that recorded these four trials and nothing else
    clean = Search(spec).run(IDS[:4])
    assert crashed.documents() == clean.documents()
    assert crashed.base.rstate.get_state()[1].tolist() == clean.base.rstate.get_state()[1].tolist()
    assert crashed.suggest("n4") == clean.suggest("n4")       # TPE (past n_initial_points): same history, same seed


def test_searcher_behind_the_experiment_state_is_rebuilt_from_the_recorded_trials(spec):
    """Saved searcher: 2 suggested, both live; experiment state: 4 ended and 1 running. Restored as
    saved, the 2 live ones never end again (both slots held: Tune waits for ever), and the next
    suggestions would reuse the seeds of t2... (the same configurations trained twice)."""
    truth = Search(spec).run(IDS[:4])
    truth.suggest("t4")
    saved = Search(spec)
    saved.suggest("t0"), saved.suggest("t1")
    assert saved.configs == {t: truth.configs[t] for t in ("t0", "t1")}
    saved.configs = truth.configs
    trials = [truth.trial(t) for t in IDS[:4]] + [truth.trial("t4", "PENDING")]
    ctx = ResumeContext(spec, {t: truth.row(t) for t in IDS[:4]})

    report = rebuild_searcher(saved.gen, trials, ctx)
    assert (report["saved_counter"], report["counter"], report["run_again"]) == (2, 5, 1)
    assert saved.gen._counter == 5
    assert saved.limiter.live_trials == {"t4"} and saved.limiter.num_unfinished_live_trials == 1
    assert set(saved.base._live_trial_mapping) == {"t4"}
    assert saved.documents() == truth.documents()            # four learned, t4 pending
    assert saved.suggest("t5") == truth.suggest("t5")         # no seed used twice
    saved.complete("t4")                                       # t4 ends: TPE learns it, its slot frees
    assert saved.limiter.live_trials == {"t5"} and saved.documents()[4][2] == 2      # JOB_STATE_DONE


def test_trials_that_ended_after_the_experiment_state_count_and_warm_start_is_kept(spec):
    """A trial that ended after Tune's last saved state lives on in trial_rows.jsonl only: it counts
    towards the budget and TPE learns it; the warm-start points stay at the head of TPE's history;
    trials that errored or never reported teach nothing."""
    run = Search(spec, WARM).run(IDS[:5])
    assert run.warm == {"inserted": 2, "dropped": 0, "method": "history"}
    trials = [run.trial(t) for t in IDS[:3]] + [run.trial("t3", "PENDING")]    # t3 runs again
    rows = {t: run.row(t) for t in IDS[:3]}
    rows["t4"] = run.row("t4")                                                  # ended after the state
    rows["gone"] = dict(run.row("t0"), trial_id="gone", status="error")        # not ended: not counted
    report = rebuild_searcher(run.gen, trials, ResumeContext(spec, rows, warm_inserted=2))
    assert (report["trials_in_state"], report["ended_after_state"], report["counter"]) == (4, 1, 5)
    assert report["learned"] == 4                             # t0, t1, t2 and t4
    docs = run.documents()
    clean = Search(spec, WARM).run(IDS[:5]).documents()
    assert docs[:2] == clean[:2]                              # the warm start, as inserted
    assert [d[2] for d in docs] == [2, 2, 2, 2, 2, 2, 0]      # warm, t0-t2, t4 done; t3 pending
    assert docs[5] == clean[6] and docs[6][0] == clean[5][0]

    failed = Search(spec).run(IDS[:2])
    rows = {"t0": failed.row("t0", status="error"), "t1": failed.row("t1")}
    report = rebuild_searcher(failed.gen, [failed.trial("t0"), failed.trial("t1")], ResumeContext(spec, rows))
    assert report["learned"] == 1 and report["counter"] == 2


def test_a_replay_warm_start_replays_nothing_twice_after_resume(spec):
    """budget.transfer replay: configurations the recorded trials already ran are dropped from the
    replay queue of a searcher restored from an older save, and a replayed trial that runs again is
    completed by TPE (pending in its history), not replayed."""
    from autounfold.search.simulate import with_budget

    replay = with_budget(spec, transfer="replay", transfer_top_k=2)
    run = Search(replay, WARM)
    assert run.warm["replay"] == 2 and run.warm["method"] == "replay"
    first = replay.flatten(run.suggest("t0"))
    assert first == WARM.points[1][0]                         # the earlier best first
    run.complete("t0")
    old = Search(replay, WARM)                                # restored from a save before t0 was suggested
    old.configs["t0"] = run.configs["t0"]
    rebuild_searcher(old.gen, [old.trial("t0")], ResumeContext(replay, {"t0": run.row("t0")}))
    assert replay.flatten(old.suggest("t1")) == WARM.points[0][0]     # the second replay, not the first again
    assert old.limiter.searcher.queue == []                   # both replays are spent


def test_an_optuna_search_is_rebuilt_from_the_recorded_trials(spec):
    """optuna_tpe: the rebuilt study holds the warm start, every ended trial with its objective and the
    trial that runs again (pending, its parameters kept, completed by Tune as it ends); the sampler is
    reseeded, so the next suggestion is not a repeat of the interrupted search's random start-up."""
    from autounfold.search.simulate import with_budget

    opt = with_budget(spec, algorithm="optuna_tpe", n_initial_points=10)        # still in the random start-up
    run = Search(opt, WARM).run(IDS[:4])
    run.suggest("t4")                                             # running when the driver died
    trials = [run.trial(t) for t in IDS[:3]] + [run.trial("t4", "RUNNING")]
    rows = {t: run.row(t) for t in IDS[:4]}                        # t3 ended after the saved state
    report = rebuild_searcher(run.gen, trials, ResumeContext(opt, rows, warm_inserted=2))
    study = run.base._ot_study
    assert report["learned"] == 4 and report["counter"] == 5
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert [t.value for t in done] == [97.0, 99.0] + [objective(t) for t in IDS[:4]]
    assert opt.flatten(run.configs["t4"]) == dict(run.base._ot_trials["t4"].params)     # runs again, same config
    run.complete("t4")
    assert [t.state.name for t in study.trials].count("COMPLETE") == 7
    # a sampler seeded as the interrupted one would start its random sequence again: t0's configuration
    nxt = opt.flatten(run.suggest("t5"))
    assert nxt != opt.flatten(run.configs["t0"])
    fresh = Search(opt).suggest("x")
    assert opt.flatten(fresh) == opt.flatten(run.configs["t0"])   # (what that repeat would have been)


def test_a_gated_warm_start_decides_after_a_resume_mid_replay(spec):
    """Three replays; the search dies with one ended, one running and one never started. After the
    rebuild the unstarted one is replayed, the running one is completed through TPE (which the rebuild
    gave it to), and the gate decides once all three have results."""
    from autounfold.search.simulate import with_budget

    gated = with_budget(spec, transfer="gated", transfer_top_k=3)
    hist = History(WARM.points + [({"model.num_layers": 4, "training.lr": 0.01, "model.layer": "signed"}, 98.0)], "earlier")
    run = Search(gated, hist)
    run.suggest("t0")
    run.complete("t0")
    run.suggest("t1")                                           # running when the driver died
    old = Search(gated, hist)                                  # restored from a save before anything
    old.configs.update(run.configs)
    rows = {"t0": run.row("t0")}
    rebuild_searcher(old.gen, [old.trial("t0"), old.trial("t1", "RUNNING")], ResumeContext(gated, rows))
    wrapper = old.limiter.searcher
    assert wrapper.replays_done == 1 and wrapper.base_owned == {"t1"}
    third = gated.flatten(old.suggest("t2"))
    assert third == hist.points[0][0]                            # the third-best earlier configuration, replayed now
    old.complete("t1")
    assert "gate" not in wrapper.decision
    old.complete("t2")
    assert wrapper.decision["gate"] in ("open", "closed") and wrapper.replays_done == 3


def test_a_consistent_state_is_rebuilt_unchanged(spec):
    run = Search(spec).run(IDS[:3])
    run.suggest("t3")
    before = (run.gen._counter, set(run.limiter.live_trials), run.documents(), run.base.rstate.get_state()[1].tolist())
    report = rebuild_searcher(run.gen, [run.trial(t) for t in IDS[:3]] + [run.trial("t3", "RUNNING")],
                              ResumeContext(spec, {}))
    assert report["counter"] == report["saved_counter"] == 4
    assert (run.gen._counter, set(run.limiter.live_trials), run.documents(),
            run.base.rstate.get_state()[1].tolist()) == before


def test_an_unreadable_newest_experiment_state_is_set_aside(tmp_path):
    """Tune restores the newest experiment state and silently restarts the whole search when it
    cannot read it: a truncated newest one is set aside so that the one before it is restored."""
    (tmp_path / "experiment_state-2026-01-01_10-00-00.json").write_text(json.dumps({"trial_data": []}))
    (tmp_path / "experiment_state-2026-01-01_11-00-00.json").write_text('{"trial_data": [["')
    (tmp_path / "experiment_state-2026-01-01_12-00-00.json").write_text("")
    moved = set_aside_unreadable_states(tmp_path)
    assert [p.name for p in moved] == ["experiment_state-2026-01-01_12-00-00.json.unreadable",
                                       "experiment_state-2026-01-01_11-00-00.json.unreadable"]
    assert sorted(p.name for p in tmp_path.glob("experiment_state-*.json")) == ["experiment_state-2026-01-01_10-00-00.json"]
    assert set_aside_unreadable_states(tmp_path) == []
    (tmp_path / "experiment_state-2026-01-01_10-00-00.json").write_text("{")
    with pytest.raises(SearchError, match="no readable Ray Tune experiment state"):
        set_aside_unreadable_states(tmp_path)


def test_experiment_state_is_published_last(tmp_path, monkeypatch):
    """A kill between two renames never leaves an experiment state newer than the searcher state."""
    import pyarrow.fs
    from ray.train._internal import storage

    src = tmp_path / "staging"
    (src / "trial_1").mkdir(parents=True)
    for name in ("experiment_state-s.json", "search_gen_state-s.json", "searcher-state-s.pkl", "trial_1/result.json",
                 "tuner.pkl"):
        (src / name).write_text(name)
    order, replace = [], atomic_sync.os.replace
    monkeypatch.setattr(atomic_sync.os, "replace", lambda a, b: (order.append(str(b)), replace(a, b)))
    atomic_sync.atomic_upload(storage._upload_to_fs_path)(str(src), pyarrow.fs.LocalFileSystem(), str(tmp_path / "tune"))
    assert len(order) == 5 and order[-1].endswith("/tune/experiment_state-s.json")


def test_saving_waits_for_a_copy_of_the_staging_directory_in_progress(tmp_path):
    """Tune saves at every step without waiting for the sync of the previous save: a copy could mix
    two saves, or catch the experiment state half rewritten. The save waits for the copy."""
    import pyarrow.fs

    copying, release, events = threading.Event(), threading.Event(), []

    def slow_copy(local_path, fs, fs_path, exclude=None):
        copying.set()
        release.wait(5)
        events.append("copied")

    class Controller:
        def save_to_dir(self):
            events.append("saved")

    save = atomic_sync.locked_save(Controller.save_to_dir)
    upload = threading.Thread(target=atomic_sync.atomic_upload(slow_copy),
                              args=(str(tmp_path), pyarrow.fs.LocalFileSystem(), str(tmp_path / "out" / "tune")))
    upload.start()
    assert copying.wait(5)
    saver = threading.Thread(target=save, args=(Controller(),))
    saver.start()
    time.sleep(0.3)
    assert events == []                                        # the save is waiting for the copy
    release.set()
    upload.join(5), saver.join(5)
    assert events == ["copied", "saved"]


def test_install_wraps_tunes_save_and_resume_once():
    from ray.train._internal import storage
    from ray.tune.execution.tune_controller import TuneController

    from autounfold.search import resume

    save, res, upload = TuneController.save_to_dir, TuneController.resume, storage._upload_to_fs_path
    try:
        assert atomic_sync.install() and resume.install()
        wrapped = TuneController.save_to_dir, TuneController.resume
        assert atomic_sync.install() and resume.install()
        assert (TuneController.save_to_dir, TuneController.resume) == wrapped
        assert getattr(wrapped[0], "_autounfold_atomic") and getattr(wrapped[1], "_autounfold_rebuilds_searcher")
    finally:
        TuneController.save_to_dir, TuneController.resume, storage._upload_to_fs_path = save, res, upload


def test_the_wrapped_upload_pickles():
    """Tune pickles its sync command (the upload function) into the searcher state."""
    import ray.cloudpickle as cloudpickle
    from ray.train._internal import storage

    upload = atomic_sync.atomic_upload(storage._upload_to_fs_path)
    assert getattr(cloudpickle.loads(cloudpickle.dumps(upload)), "_autounfold_atomic")


def test_atomic_upload_wraps_once(tmp_path):
    """install() may already have wrapped Ray's upload in this process (an earlier search): wrapping
    it again must not stage every file twice."""
    import pyarrow.fs
    from ray.train._internal import storage

    once = atomic_sync.atomic_upload(getattr(storage._upload_to_fs_path, "__wrapped__", storage._upload_to_fs_path))
    assert atomic_sync.atomic_upload(once) is once
    src = tmp_path / "staging"
    src.mkdir()
    (src / "experiment_state-s.json").write_text("{}")
    atomic_sync.atomic_upload(once)(str(src), pyarrow.fs.LocalFileSystem(), str(tmp_path / "tune"))
    assert (tmp_path / "tune" / "experiment_state-s.json").read_text() == "{}"
    assert not list(tmp_path.glob(".sync-*")) and not list((tmp_path / "tune").glob(".sync-*"))
