"""What a drift trigger does: a warm-started re-search aimed at the channel the monitor sees, whose
best model is registered as the new ``challenger`` (``autounfold promote`` then canaries it)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import yaml

from ..errors import SearchError


def research_on_drift(model_dir: Path, name: str, event: dict, out_root: Path, search_run_id: Optional[str],
                      tracking_uri: Optional[str], trials: int = 16, overrides: Optional[List[str]] = None,
                      console=None) -> dict:
    """Re-run the version's own search space with the channel set to the estimated angular spread,
    warm-started from the version's search (its MLflow run), and register the best as challenger."""
    from ..search import run_search
    from ..config import set_override
    from ..spaces.spec import parse_spec

    space_file = Path(model_dir) / "search_space.yaml"
    if not space_file.is_file():
        raise SearchError(f"{model_dir}: this model version carries no search_space.yaml; cannot re-search")
    data = yaml.safe_load(space_file.read_text())
    spread = round(float(event["angular_spread_estimate"]), 1)
    changes = [f"base.problem.channel.angular_spread_deg={spread}", f"budget.num_samples={trials}",
               *(overrides or [])]
    for c in changes:
        set_override(data, c)
    if data.get("budget", {}).get("algorithm", "tpe") == "tpe" and \
            data["budget"].get("n_initial_points", 10) >= data["budget"]["num_samples"]:
        # the warm-start history already covers TPE's random start-up
        data["budget"]["n_initial_points"] = max(1, data["budget"]["num_samples"] - 1)
    spec = parse_spec(data, f"re-search of {name} ({', '.join(changes)})")
    out = Path(out_root) / f"research-{time.strftime('%Y%m%d-%H%M%S')}"
    if console is not None:
        console.print(f"trigger: covariance shift {event['value']:.3f} > {event['threshold']}; re-searching at "
                      f"angular spread {spread} deg ({trials} trials, warm start {search_run_id or 'none'}) -> {out}",
                      highlight=False)
    outcome = run_search(spec, out, warm_start=search_run_id, tracking_uri=tracking_uri, register=name, console=console)
    best = outcome.summary.get("best") or {}
    return {"out": str(out), "search_run_id": outcome.run_id, "registered": outcome.registered,
            "best_val_score": best.get("val_score"), "angular_spread_deg": spread}
