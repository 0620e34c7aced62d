"""The Ray Tune function trainable: restores a checkpoint if Tune hands one over, runs the trial,
and writes each checkpoint *before* the result that refers to it is reported."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

STATE_FILE = "trainer_state.pt"
MODEL_DIR = "model"
FINAL_FILE = "final.json"


def trainable(config: dict, spec_yaml: str) -> None:
    import shutil

    import ray
    import torch
    from ray import tune

    from ..spaces.spec import spec_from_yaml
    from .trial import run_trial

    spec = spec_from_yaml(spec_yaml, "search spec", check_space=False)   # validated by the driver
    params = spec.flatten(config)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    resume = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            final = Path(d) / FINAL_FILE
            if final.is_file():
                # the trial had finished when the driver died: report the same result again (its row
                # and model are in the checkpoint), do not train a second time
                tune.report(json.loads(final.read_text()), checkpoint=ckpt)
                return
            state_path = Path(d) / STATE_FILE
            if state_path.is_file():
                resume = torch.load(state_path, weights_only=True)
    device = "cuda" if spec.resources.gpu > 0 and torch.cuda.is_available() else "cpu"

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, state, model_dir) -> None:
        metrics = {**metrics, "node_id": node_id, "restored": resume is not None}
        if state is None and model_dir is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            if state is not None:
                torch.save(state, Path(tmp) / STATE_FILE)
            if model_dir is not None:
                shutil.copytree(model_dir, Path(tmp) / MODEL_DIR)
                (Path(tmp) / FINAL_FILE).write_text(json.dumps(metrics))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or max(1, int(spec.resources.cpu))
    run_trial(spec, params, trial_id, report, resume=resume, device=device, threads=threads)
