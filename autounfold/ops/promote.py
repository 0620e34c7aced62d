"""Model lifecycle in the registry: ``challenger`` -> canary -> ``champion`` (or rolled back).

``promote`` compares the version aliased ``challenger`` with the one aliased ``champion`` on a
canary share of the traffic (``evaluation.canary``, scored by the problem's validation score) and
moves the aliases:

* no champion yet: the challenger becomes champion (the first model ever);
* challenger not worse than champion beyond the tolerance: ``champion`` -> challenger's version,
  ``previous_champion`` -> the old champion, ``challenger`` alias removed;
* otherwise roll back: ``champion`` stays, the ``challenger`` alias is removed.

Every decision is an MLflow run (experiment ``autounfold-promotions``) with the numbers, and the
versions carry ``autounfold.canary_decision`` / ``autounfold.canary_run_id`` tags.
"""
from __future__ import annotations

import tempfile
from typing import Optional

from ..artifacts import load
from ..build import build_problem
from ..config import parse_config, set_override
from ..errors import ConfigError, RegistryError
from ..evaluation.canary import decide, run_canary
from ..registry import (CHALLENGER, CHAMPION, PREVIOUS, download_model, experiment_id, get_alias, mlflow_client,
                        require_registered_model)

EXPERIMENT = "autounfold-promotions"


def traffic_source(model, overrides=None):
    """The default canary traffic: the model's own problem (its channel model for beamforming),
    changed by ``overrides`` such as ``problem.channel.angular_spread_deg=40``."""
    data = model.config.model_dump(mode="json")
    for o in overrides or []:
        set_override(data, o)
    problem = build_problem(parse_config(data, "traffic (--set)").problem)
    return problem.source if problem.draws_channels else problem


def promote(name: str, *, canary: float = 0.05, batches: int = 200, batch_size: int = 64,
            tolerance: Optional[float] = None, source=None, traffic_overrides=None, seed: int = 0,
            tracking_uri: Optional[str] = None, console=None) -> dict:
    """Run the canary and move the aliases. ``source``: the traffic (anything with
    ``sample(batch, seed)``; default ``traffic_source(champion, traffic_overrides)``). ``tolerance``
    is in score units (percentage points of the optimum for beamforming, SER for detection); None:
    the champion's problem's ``promote_tolerance`` (0.05; detection 0.002 SER; decoding 0.005 BLER), recorded with
    ``tolerance_from`` = "problem" (else "caller"). Returns the decision record.

    A registry that fails while the aliases are read raises RegistryError: a passing error is never
    taken for "no champion" (which would promote without a canary)."""
    if source is not None and traffic_overrides:
        raise ConfigError("--source (recorded CSI) and --set (synthetic traffic) exclude each other")
    client, uri = mlflow_client(tracking_uri)
    require_registered_model(client, uri, name)
    challenger = get_alias(client, uri, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"{name}: no version has the alias '{CHALLENGER}' (register a search's best model first)")
    champion = get_alias(client, uri, name, CHAMPION)
    record = {"name": name, "challenger_version": str(challenger.version),
              "champion_version": str(champion.version) if champion else None,
              "canary": canary, "batches": batches, "batch_size": batch_size, "tolerance": tolerance,
              "tolerance_from": "caller" if tolerance is not None else "problem"}
    if champion is not None and str(champion.version) == str(challenger.version):
        record["decision"] = "unchanged"
        record["reason"] = "the challenger already is the champion"
        return record
    exp_id = experiment_id(client, uri, EXPERIMENT)
    run = client.create_run(exp_id, run_name=f"promote-{name}-v{challenger.version}",
                            tags={"autounfold.kind": "promotion", "autounfold.model": name})
    rid = run.info.run_id
    try:
        for k, v in record.items():
            if v is not None:
                client.log_param(rid, k, v)
        if champion is None:
            record["decision"] = "promote"
            record["reason"] = "first model: no champion to compare with"
        else:
            with tempfile.TemporaryDirectory() as tmp:
                champ_model = load(str(download_model(f"models:/{name}/{champion.version}", f"{tmp}/a", uri)))
                chall_model = load(str(download_model(f"models:/{name}/{challenger.version}", f"{tmp}/b", uri)))
            if tolerance is None:            # in the score units of the problem the canary scores
                tolerance = float(champ_model.problem.promote_tolerance)
                record["tolerance"] = tolerance
                client.log_param(rid, "tolerance", tolerance)
            traffic = source if source is not None else traffic_source(champ_model, traffic_overrides)
            if console is not None:
                console.print(f"canary: {canary:.0%} of {batches} batches of {batch_size} channels to challenger "
                              f"v{challenger.version}, the rest to champion v{champion.version} ...", highlight=False)
            report = run_canary(champ_model, chall_model, traffic, batches, batch_size, canary, seed)
            summary = report.summary()
            record.update(summary)
            record["decision"] = decide(summary, tolerance)
            record["reason"] = (f"challenger score {summary['challenger_score']:.4f} vs champion "
                                f"{summary['champion_score']:.4f} ({champ_model.problem.score_key}; tolerance {tolerance})")
            for k, v in summary.items():
                client.log_metric(rid, k, float(v))
        if record["decision"] == "promote":
            if champion is not None:
                client.set_registered_model_alias(name, PREVIOUS, champion.version)
            client.set_registered_model_alias(name, CHAMPION, challenger.version)
        client.delete_registered_model_alias(name, CHALLENGER)
        for mv in (challenger,):
            client.set_model_version_tag(name, mv.version, "autounfold.canary_decision", record["decision"])
            client.set_model_version_tag(name, mv.version, "autounfold.canary_run_id", rid)
        client.set_tag(rid, "autounfold.decision", record["decision"])
        client.set_tag(rid, "autounfold.reason", record["reason"][:5000])
        client.set_terminated(rid, "FINISHED")
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    record["run_id"] = rid
    return record
