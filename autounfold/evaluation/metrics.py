"""Quality metrics shared by training, evaluation and benchmarks."""
from __future__ import annotations

import math

import torch


def summarize(problem, x, inst, ref) -> dict:
    """Scalar summary of a batch of solutions.

    beamforming: pct_of_optimum = 100 * mean SE / mean SE of the reference; p5_pct = 5th percentile
        over channels of 100 * SE / SE_ref; min_pct; se_mean; feasible (all samples within P(1+1e-5)).
    lasso: nmse_db against the true signal (or the reference when x_true is unknown); objective_mean.
    """
    m = problem.metrics(x, inst, ref)
    feasible = bool(problem.feasible(x, inst).all())
    if problem.name == "beamforming":
        ratio = 100.0 * m["ratio"].double()
        return {"pct_of_optimum": float(100.0 * m["se"].double().mean() / m["se_ref"].double().mean()),
                "p5_pct": float(torch.quantile(ratio, 0.05)), "min_pct": float(ratio.min()),
                "se_mean": float(m["se"].double().mean()), "feasible": feasible}
    err, norm = float(m["sq_err"].double().sum()), float(m["sq_norm"].double().sum())
    return {"nmse_db": 10.0 * math.log10(max(err, 1e-30) / max(norm, 1e-30)),
            "objective_mean": float(m["objective"].double().mean()), "feasible": feasible}


def validation_score(problem, x, inst, ref) -> float:
    """One number, higher is better: % of optimum (beamforming) or -NMSE in dB (lasso)."""
    s = summarize(problem, x, inst, ref)
    return s["pct_of_optimum"] if "pct_of_optimum" in s else -s["nmse_db"]
