"""The searchers behind ``budget.algorithm`` (``spaces.spec.ALGORITHMS``), their treatment of running
trials (``budget.constant_liar``) and of a warm start (``budget.transfer``), all behind Ray Tune's
``Searcher`` contract so that a live search (``runner.run_search``) and the tabular benchmark
(``simulate``) run the very same objects.

* ``tpe`` / ``random``: ``AutoHyperOpt`` (Ray's ``HyperOptSearch`` that implements
  ``add_evaluated_point``: a point becomes a finished trial of TPE's own history). Random search is
  TPE that never leaves its random start-up: with the same seed the two make the same first
  ``n_initial_points`` suggestions (paired seeds).
* ``optuna_tpe``: ``AutoOptuna`` (Ray's ``OptunaSearch`` with a define-by-run space that handles
  conditionals, ``TPESampler(multivariate=True, group=True)``, and ``add_evaluated_point`` for it).
* ``TransferSearcher``: a warm start that replays the earlier search's best configurations first
  (``replay``), and then inserts the rest of the earlier history only where the replayed results
  rank like the earlier ones (``gated``). ``history`` inserts everything up front (no wrapper).

Every searcher returns configurations in the nested form ``dimensions.to_hyperopt`` samples, so the
trainable (``spec.flatten``) and the trial table see one format whatever the backend.
"""
from __future__ import annotations

import logging
import warnings
from typing import Dict, List, Optional, Tuple

from ..spaces import dimensions as D
from ..spaces.spec import SearchSpec
from .history import History, insert_doc

log = logging.getLogger(__name__)

DRIFT_TRANSFER = "gated"
"""How a drift trigger's re-search uses the earlier search (``ops.research``): the method the search
benchmark favours (benchmarks/SEARCH_RESULTS.md, warm-start tables)."""

GATE_MIN_RANK_CORRELATION = 0.5
"""``gated``: the earlier history is inserted when Spearman's rank correlation between the replayed
configurations' earlier and new objectives is at least this."""


class LiarAlgo:
    """hyperopt's ``tpe.suggest`` with running trials (documents with no loss yet) treated as
    ``mode``: ``worst`` (hyperopt's own behaviour: loss +inf), ``mean`` (the mean loss of the
    finished trials), ``none`` (left out: TPE suggests from the finished trials only)."""

    def __init__(self, algo, mode: str):
        self.algo, self.mode = algo, mode

    def __call__(self, new_ids, domain, trials, seed):
        if self.mode == "worst":
            return self.algo(new_ids, domain, trials, seed)
        running = [d for d in trials._trials if d["result"].get("loss") is None]
        if not running:
            return self.algo(new_ids, domain, trials, seed)
        saved_list, saved_results = trials._trials, [d["result"] for d in running]
        try:
            if self.mode == "none":
                trials._trials = [d for d in saved_list if d["result"].get("loss") is not None]
            else:
                losses = [float(d["result"]["loss"]) for d in saved_list if d["result"].get("loss") is not None]
                if losses:
                    lie = sum(losses) / len(losses)
                    for d in running:
                        d["result"] = {"status": "ok", "loss": lie}
            return self.algo(new_ids, domain, trials, seed)
        finally:
            trials._trials = saved_list
            for d, r in zip(running, saved_results):
                d["result"] = r


def _hyperopt(spec: SearchSpec, n_initial_points: int):
    from ray.tune.search.hyperopt import HyperOptSearch

    class AutoHyperOpt(HyperOptSearch):
        """``HyperOptSearch`` that implements ``Searcher.add_evaluated_point`` (Ray's contract for
        results evaluated outside the suggest / complete loop, which ``HyperOptSearch`` leaves
        unimplemented): the point becomes a finished trial of TPE's own history, so it counts
        towards ``n_initial_points`` and shapes the next suggestions.

        ``parameters`` are the flat trial parameters of ``spec`` (what ``trials.parquet`` stores);
        points outside the space raise ValueError."""

        def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
            vals = spec.to_vals(parameters)
            if vals is None:
                raise ValueError(f"point outside the search space of {spec.name}: {parameters}")
            if error:
                value = spec.objective.worst
            insert_doc(self._hpopt_trials, vals, -spec.objective.sign * float(value))      # hyperopt minimises

    b = spec.budget
    searcher = AutoHyperOpt(space=spec.hyperopt_space(), metric="objective", mode=spec.objective.mode,
                            n_initial_points=n_initial_points, random_state_seed=spec.searcher_seed, gamma=b.gamma)
    searcher.algo = LiarAlgo(searcher.algo, b.constant_liar)
    return searcher


class _DefineByRun:
    """The define-by-run space of ``OptunaSearch`` (a module-level class: ``OptunaSearch.save`` pickles it)."""

    def __init__(self, space):
        self.space = space

    def __call__(self, trial):
        D.optuna_sample(self.space, trial)
        return None


def _optuna(spec: SearchSpec, n_initial_points: int):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spec.space

    define_by_run = _DefineByRun(space)

    class AutoOptuna(OptunaSearch):
        """``OptunaSearch`` over the spec's space, define-by-run (conditionals sample only the chosen
        branch), returning nested configurations like hyperopt's, with ``add_evaluated_point`` for
        the define-by-run space (Ray's raises TypeError there)."""

        def suggest(self, trial_id):
            # OptunaSearch.suggest would unflatten the labels at "/" (a conditional's sub-labels)
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask()
            return D.unflatten(space, D.optuna_sample(space, self._ot_trials[trial_id]))

        def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
            if spec.to_vals(parameters) is None:
                raise ValueError(f"point outside the search space of {spec.name}: {parameters}")
            dists = D.optuna_distributions(space, parameters)
            params = {k: parameters[k] for k in dists}
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.COMPLETE
            self._ot_study.add_trial(optuna.trial.create_trial(
                state=state, value=None if error else float(value), params=params, distributions=dists))

    return AutoOptuna(space=define_by_run, metric="objective", mode=spec.objective.mode,
                      sampler=_optuna_sampler(spec, n_initial_points, spec.searcher_seed))


def _optuna_sampler(spec: SearchSpec, n_initial_points: int, seed: int):
    import optuna

    with warnings.catch_warnings():             # multivariate / group are flagged experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed % (2**32), n_startup_trials=n_initial_points,
                                          multivariate=True, group=True,
                                          constant_liar=spec.budget.constant_liar == "worst")


def rebuild_optuna(searcher, spec: SearchSpec, learned: List[Tuple[dict, float]], again: List[Tuple[str, dict]],
                   warm_inserted: int, recorded: int) -> dict:
    """``--resume`` for ``optuna_tpe`` (``resume.rebuild_searcher``): a new study holding the warm-start
    points (the first ``warm_inserted`` trials of the saved study), every ended trial with its
    objective (``learned``) and the trials that run again (``again``: asked, pending, their
    parameters fixed); the sampler reseeded from (seed, trials recorded) so that its random start-up
    does not repeat the suggestions of the interrupted search."""
    import optuna

    from ..seeding import derive_seed

    saved = searcher._ot_study
    study = optuna.create_study(direction="maximize" if spec.objective.mode == "max" else "minimize",
                                sampler=_optuna_sampler(spec, spec.budget.n_initial_points,
                                                        derive_seed(spec.searcher_seed, "resume", recorded)))
    for t in saved.trials[:warm_inserted]:
        study.add_trial(t)
    searcher._ot_study, searcher._ot_trials, searcher._completed_trials = study, {}, set()
    for params, value in learned:
        searcher.add_evaluated_point(params, value)
    for trial_id, params in again:
        study.enqueue_trial({k: params[k] for k in D.optuna_distributions(spec.space, params)})
        searcher._ot_trials[trial_id] = study.ask()
        D.optuna_sample(spec.space, searcher._ot_trials[trial_id])      # takes the enqueued values
    return {"saved_documents": len(saved.trials), "documents": len(study.trials), "learned": len(learned)}


def base_searcher(spec: SearchSpec, n_initial_points: Optional[int] = None, extra_history: int = 0):
    """The searcher of ``spec.budget.algorithm`` with no history. ``extra_history``: points that will
    be added before the first suggestion (random search keeps its start-up past them too)."""
    b = spec.budget
    if b.algorithm == "random":
        # random search = TPE that never leaves its random start-up (same code path, same seeding)
        return _hyperopt(spec, b.num_samples + extra_history + 1)
    n = n_initial_points or b.n_initial_points
    if b.algorithm == "tpe":
        return _hyperopt(spec, n)
    if b.algorithm == "optuna_tpe":
        return _optuna(spec, n)
    raise ValueError(f"budget.algorithm {b.algorithm!r} has no searcher")     # spec validation prevents this


def _rank(xs: List[float]) -> List[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: List[float], b: List[float]) -> float:
    """Spearman's rank correlation (ties averaged); 0 when either side is constant."""
    ra, rb = _rank(a), _rank(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va > 0 and vb > 0 else 0.0


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def top_configurations(spec: SearchSpec, history: History, k: int) -> List[Tuple[dict, float]]:
    """The ``k`` best distinct earlier configurations that lie in ``spec``'s space, best first."""
    seen, out = set(), []
    for params, value in sorted(history.points, key=lambda p: -spec.objective.sign * p[1]):
        key = _key(params)
        if key in seen or spec.to_vals(params) is None:
            continue
        seen.add(key)
        out.append((params, value))
        if len(out) == k:
            break
    return out


def _make_transfer_class():
    from ray.tune.search import Searcher

    class TransferSearcher(Searcher):
        """A warm start through replay: the earlier search's ``top_k`` configurations are suggested
        first and, as their new results come in, handed to ``searcher`` as evaluated points; then
        ``searcher`` suggests. With ``gated``, once every replayed configuration has its new result,
        the rest of the earlier history is inserted too, shifted by the median change of the
        replayed objectives, when the replayed results rank like the earlier ones (Spearman >=
        ``GATE_MIN_RANK_CORRELATION``); otherwise the earlier history is not used beyond the replay.
        ``decision`` records what was done."""

        def __init__(self, searcher, spec: SearchSpec, history: History, method: str, top_k: int):
            super().__init__(metric=searcher.metric, mode=searcher.mode)
            self.searcher, self.spec, self.method = searcher, spec, method
            self.replay = top_configurations(spec, history, top_k)
            self.queue = [p for p, _ in self.replay]
            self.history = history
            self.replayed: Dict[str, Tuple[dict, float]] = {}       # trial id -> (params, earlier objective)
            self.base_owned: set = set()        # replays running again after --resume: the base searcher holds them
            self.results: List[Tuple[float, float]] = []            # (earlier, new) objective pairs
            self.replays_done = 0
            self.decision: dict = {"method": method, "replayed": len(self.replay), "inserted": 0}

        def suggest(self, trial_id):
            if self.queue:
                params = self.queue.pop(0)
                self.replayed[trial_id] = (params, self._earlier(params))
                return D.unflatten(self.spec.space, params)
            return self.searcher.suggest(trial_id)

        def _earlier(self, params) -> float:
            return next(v for p, v in self.replay if p == params)

        def on_trial_result(self, trial_id, result):
            if trial_id not in self.replayed or trial_id in self.base_owned:
                self.searcher.on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id, result=None, error=False):
            if trial_id not in self.replayed:
                self.searcher.on_trial_complete(trial_id, result=result, error=error)
                return
            params, earlier = self.replayed[trial_id]
            value = None if (error or not result or self.metric not in result) else float(result[self.metric])
            if trial_id in self.base_owned:
                self.searcher.on_trial_complete(trial_id, result=result, error=error)
            elif value is not None:             # an errored replay teaches nothing (as an errored trial)
                self.searcher.add_evaluated_point(params, value)
            self._count(earlier, value)

        def _count(self, earlier: float, value: Optional[float]) -> None:
            if value is not None:
                self.results.append((earlier, value))
            self.replays_done += 1
            self._maybe_gate()

        def _maybe_gate(self) -> None:
            if self.method == "gated" and "gate" not in self.decision and self.replays_done >= len(self.replay):
                self._gate()

        def _gate(self):
            if len(self.results) < 3:
                self.decision.update(gate="closed", reason=f"{len(self.results)} replayed results (< 3)")
                return
            earlier, new = [a for a, _ in self.results], [b for _, b in self.results]
            rho = spearman(earlier, new)
            shift = sorted(b - a for a, b in self.results)[len(self.results) // 2]
            self.decision.update(rank_correlation=rho, shift=shift)
            if rho < GATE_MIN_RANK_CORRELATION:
                self.decision["gate"] = "closed"
                return
            self.decision.update(gate="open", inserted=self._insert_history(shift))

        def _insert_history(self, shift: float) -> int:
            replayed = {_key(p) for p, _ in self.replay}
            n = 0
            for params, value in self.history.points:
                if _key(params) in replayed or self.spec.to_vals(params) is None:
                    continue
                self.searcher.add_evaluated_point(params, value + shift)
                n += 1
            return n

        def save(self, checkpoint_path):
            from ray import cloudpickle
            with open(checkpoint_path, "wb") as fh:
                cloudpickle.dump(self.__dict__.copy(), fh)

        def restore(self, checkpoint_path):
            from ray import cloudpickle
            with open(checkpoint_path, "rb") as fh:
                self.__dict__.update(cloudpickle.load(fh))

        def get_state(self) -> dict:
            return {k: v for k, v in self.__dict__.items() if k != "searcher"}     # Ray saves the base itself

        def set_state(self, state: dict) -> None:
            self.__dict__.update({k: v for k, v in state.items() if k != "searcher"})

        def rebuild(self, ended: List[Tuple[dict, Optional[float]]], again: List[Tuple[str, dict]]) -> None:
            """After ``--resume`` (``resume.rebuild_searcher``), from what the search recorded rather than
            the saved state: ``ended`` (params, objective or None) of every ended trial, ``again`` (trial id,
            params) of the trials that run again. Replays that ended count towards the gate; replays that
            run again are completed through the base searcher (which the rebuild gave them to); replays
            never started are replayed."""
            replay_keys = {_key(p): (p, v) for p, v in self.replay}
            ended_keys, again_keys = {_key(p) for p, _ in ended}, {_key(p) for _, p in again}
            self.queue = [p for p, _ in self.replay if _key(p) not in ended_keys | again_keys]
            self.results, self.replays_done = [], 0
            for params, value in ended:
                if _key(params) in replay_keys:
                    self.replays_done += 1
                    if value is not None:
                        self.results.append((replay_keys[_key(params)][1], value))
            self.replayed = {tid: replay_keys[_key(p)] for tid, p in again if _key(p) in replay_keys}
            self.base_owned = set(self.replayed)
            if self.decision.get("gate") == "open":
                # the rebuilt base keeps only the trials and the up-front warm start
                self._insert_history(self.decision.get("shift", 0.0))
            else:
                self._maybe_gate()

    return TransferSearcher


def make_searcher(spec: SearchSpec, history: "History | None" = None, n_initial_points: "int | None" = None):
    """The searcher of ``spec`` with ``history`` (an earlier search) used as ``spec.budget.transfer``
    says. Returns ``(searcher, counts)``; ``counts`` says what the warm start did up front:
    ``inserted`` (points in the history now), ``dropped`` (outside this space), ``replay``
    (configurations to be evaluated first)."""
    b = spec.budget
    if history is None or b.transfer == "history":
        n_hist = len(history.points) if history else 0
        searcher = base_searcher(spec, n_initial_points, n_hist)
        if history is None:
            return searcher, {"inserted": 0, "dropped": 0}
        inserted = dropped = 0
        for params, objective in history.points:
            if spec.to_vals(params) is None:
                dropped += 1
                continue
            searcher.add_evaluated_point(params, objective)
            inserted += 1
        if dropped:
            log.warning("warm start: %d of %d earlier trials lie outside the new search space and were dropped",
                        dropped, len(history.points))
        return searcher, {"inserted": inserted, "dropped": dropped, "method": "history"}
    # random search stays random past the replays and whatever an open gate inserts
    inner = base_searcher(spec, n_initial_points, len(history.points))
    wrapper = _make_transfer_class()(inner, spec, history, b.transfer, b.transfer_top_k)
    dropped = sum(spec.to_vals(p) is None for p, _ in history.points)
    return wrapper, {"inserted": 0, "dropped": dropped, "replay": len(wrapper.replay), "method": b.transfer}
