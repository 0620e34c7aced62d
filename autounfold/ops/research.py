"""What a drift trigger does: a warm-started re-search aimed at the channel the monitor sees, whose
best model is registered as the new ``challenger`` (``autounfold promote`` then canaries it)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional


from ..config import dotted_keys, read_yaml_mapping, set_override
from ..errors import SearchError
from ..schema import load_yaml
from ..search.searchers import DRIFT_TRANSFER
from ..spaces.spec import SPACE_FILE, parse_spec
from .search import search


def _space_data(model_dir: Path) -> dict:
    space_file = Path(model_dir) / SPACE_FILE
    if not space_file.is_file():
        raise SearchError(f"{model_dir}: this model version carries no {SPACE_FILE}; cannot re-search")
    return read_yaml_mapping(space_file, SearchError)


def _spread(event: dict, angular_spread: bool) -> Optional[float]:
    return round(float(event["angular_spread_estimate"]), 1) if angular_spread else None


def research_target(event: dict, angular_spread: bool = True) -> str:
    """What a re-search on the trigger ``event`` re-targets, for the printed line: the angular spread
    (``angular_spread``: the problem estimates it, ``estimates_angular_spread``) and the changes the
    problem named (the event's ``research_set``, e.g. ``base.problem.channel.model=uma``)."""
    spread, named = _spread(event, angular_spread), list(event.get("research_set") or [])
    parts = ([f"at angular spread {spread} deg"] if spread is not None else []) + \
        ([f"with {' '.join(named)}"] if named else [])
    return " ".join(parts) or "with the version's own channel settings (no change named)"


def research_changes(model_dir: Path, event: dict, trials: int, overrides: Optional[List[str]] = None,
                     angular_spread: bool = True) -> List[str]:
    """The ``--set`` changes that aim the version's own search space at the channel the monitor sees:
    the estimated angular spread where the problem estimates one (``angular_spread``), the trial budget,
    the warm-start transfer the search benchmark favours (``searchers.DRIFT_TRANSFER``), then ``overrides`` (the trigger's ``research_set`` and the user's ``--research-set``)."""
    data = _space_data(model_dir)
    spread = _spread(event, angular_spread)
    # a transmit coefficient set directly (tx_rho) would override the spread: cleared where the base sets one
    direct = (((data.get("base") or {}).get("problem") or {}).get("channel") or {}).get("tx_rho") is not None
    changes = [*([f"base.problem.channel.angular_spread_deg={spread}"] if spread is not None else []),
               *(["base.problem.channel.tx_rho=null"] if spread is not None and direct else []),
               f"budget.num_samples={trials}", f"budget.transfer={DRIFT_TRANSFER}", *(overrides or [])]
    for c in changes:
        set_override(data, c)
    budget = data.get("budget", {})
    if budget.get("algorithm", "tpe") != "random" and budget.get("n_initial_points", 10) >= budget.get("num_samples", 40):
        # the warm-start history already covers TPE's random start-up
        changes.append(f"budget.n_initial_points={max(1, budget['num_samples'] - 1)}")
    changes += _training_follows(data, changes)
    return changes


def _training_follows(data: dict, changes: List[str]) -> List[str]:
    """Where the space's base trains on a changed problem (``base.training.problem``, and likewise
    the refine draw's ``base.training.refine.problem``) and a change moves one of those same keys of
    ``base.problem``, that draw must move too, or the re-search would validate on the new channel and
    train (or refine) on the old one: one more change per section that rewrites it with those keys
    set as the problem now has them."""
    training = (data.get("base") or {}).get("training") or {}
    sections = {"base.training.problem": training.get("problem"),
                "base.training.refine.problem": (training.get("refine") or {}).get("problem")}
    out = []
    for label, section in sections.items():
        if any(c.strip().startswith(label) for c in changes):
            continue                                # set explicitly: that wins
        current = dotted_keys(section) if isinstance(section, dict) else {}
        moved = {}
        for c in changes:
            key, _, raw = c.partition("=")
            key = key.strip()
            if key.startswith("base.problem.") and key[len("base.problem."):] in current:
                moved[key[len("base.problem."):]] = load_yaml(raw, f"--set {key}", SearchError)
        if moved:
            out.append(f"{label}=" + json.dumps({**current, **moved}))
    return out


def submit_research(model_ref: str, name: str, version: str, changes: List[str], search_run_id: Optional[str],
                    tracking_uri: str, address: str, console=None) -> dict:
    """The re-search as a Ray job on the cluster at ``address``: the job reads the search space from
    the registry (``autounfold search models:/NAME/VERSION``), so it needs no files from here."""
    import shlex

    from ..jobs import JobSpec, submit_job
    if not tracking_uri.startswith(("http://", "https://")):
        raise SearchError(f"a re-search on the cluster at {address} must reach the registry: give an MLflow server "
                          f"(--tracking-uri http://...), not {tracking_uri}")
    words = ["autounfold", "search", f"models:/{name}/{version}", "--address", "auto", "--tracking-uri", tracking_uri,
             "--register", name, "--out", f"runs/monitor/{name}/research-{time.strftime('%Y%m%d-%H%M%S')}"]
    for c in changes:
        words += ["--set", c]
    if search_run_id:
        words += ["--warm-start", search_run_id]
    spec = JobSpec(name="research", entrypoint=shlex.join(words), metadata={"trigger": model_ref},
                   runtime_env={"env_vars": {"MLFLOW_DISABLE_TELEMETRY": "true"}})
    job_id = submit_job(spec, address)
    if console is not None:
        console.print(f"trigger: re-search submitted to {address} as job {job_id}", highlight=False)
    return {"job_id": job_id, "address": address, "entrypoint": spec.entrypoint}


def research_line(event: dict, trials: int, search_run_id: Optional[str], out: "str | Path",
                  angular_spread: bool = True) -> str:
    """The line ``research_on_drift`` prints: the trigger and what the re-search re-targets
    (``research_target``)."""
    return (f"trigger: covariance shift {event['value']:.3f} > {event['threshold']}; re-searching "
            f"{research_target(event, angular_spread)} ({trials} trials, warm start {search_run_id or 'none'}) -> {out}")


def research_on_drift(model_dir: Path, name: str, event: dict, out_root: Path, search_run_id: Optional[str],
                      tracking_uri: Optional[str], trials: int = 16, overrides: Optional[List[str]] = None,
                      console=None, angular_spread: bool = True) -> dict:
    """Re-run the version's own search space in this process aimed at the channel the monitor sees (the
    estimated angular spread where ``angular_spread``, and the ``overrides``: the trigger's
    ``research_set``, e.g. the channel model, then the user's), warm-started from the version's search
    (its MLflow run); the best becomes challenger."""
    changes = research_changes(model_dir, event, trials, overrides, angular_spread)
    data = _space_data(model_dir)
    for c in changes:
        set_override(data, c)
    spread = _spread(event, angular_spread)
    spec = parse_spec(data, f"re-search of {name} ({', '.join(changes)})")
    out = Path(out_root) / f"research-{time.strftime('%Y%m%d-%H%M%S')}"
    if console is not None:
        console.print(research_line(event, trials, search_run_id, out, angular_spread), highlight=False)
    outcome = search(spec, out, warm_start=search_run_id, tracking_uri=tracking_uri, register=name, console=console)
    best = outcome.summary.get("best") or {}
    return {"out": str(out), "search_run_id": outcome.run_id, "registered": outcome.registered,
            "best_val_score": best.get("val_score"), "angular_spread_deg": spread,
            "research_set": list(event.get("research_set") or [])}
