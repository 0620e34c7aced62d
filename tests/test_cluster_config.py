"""cluster.yaml passes Ray's own cluster-config validation and keeps the security defaults."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_cluster_yaml_is_valid_for_ray():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(raw))          # Ray's schema (jsonschema) after Ray fills its defaults
    nodes = raw["available_node_types"]
    assert nodes[raw["head_node_type"]]["resources"] == {"CPU": 0}
    gpu = nodes["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"]
    starts = " ".join(raw["head_start_ray_commands"] + raw["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2
    assert "--dashboard-host=127.0.0.1" in starts
    assert any('.[gpu]' in c for c in raw["setup_commands"])


def test_ray_validation_rejects_a_broken_config():
    import jsonschema
    import pytest
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    raw["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(raw))
