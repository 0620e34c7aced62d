"""Tabular search benchmark (the HPOBench / YAHPO Gym way): every configuration of a *discrete*
search space is trained once with the real trainer, through Ray, and the results are cached in a
Parquet table keyed by the spec's sha256; searchers are then run for many seeds against the table
(``search.simulate``) at the cost of their own suggestions, not of training.

A table is built from a ``SearchSpec`` whose dimensions are all discrete (int ranges, categorical
values, conditionals over discrete sub-spaces): ``enumerate_space`` lists the full factorial.

Files (``path`` = ``<dir>/<label>.parquet``)::

    <label>.rows.jsonl   one JSON row per finished trial, fsynced as it ends (the first line names
                         the spec's sha256): an interrupted build resumes from it
    <label>.parquet      the finished table; schema metadata: spec sha256, spec YAML, counts

A table is keyed by ``table_sha256(spec)``: the sha256 of the spec's canonical YAML without its
``budget`` (the budget decides how a searcher walks the table, not what any trial scores). A table
(or a partial rows file) built from a different spec is refused, never overwritten.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..errors import SearchError
from ..spaces import dimensions as D
from ..spaces.spec import SearchSpec, spec_from_yaml

KIND = "autounfold-tabular-v1"


class TableError(SearchError):
    """A table that cannot be built or reused as asked (wrong spec, non-discrete space, bad file)."""


def params_key(params: dict) -> str:
    """The canonical key of a flat configuration (what the table is indexed by)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _values(label: str, dim) -> list:
    if isinstance(dim, D.IntDim):
        if dim.high - dim.low > 1000:
            raise TableError(f"tabular benchmark: {label!r} has {dim.high - dim.low + 1} integer values; "
                             "give it as a categorical of the values to tabulate")
        return list(range(int(dim.low), int(dim.high) + 1))
    if isinstance(dim, D.CategoricalDim):
        return list(dim.values)
    if isinstance(dim, D.FloatDim):
        raise TableError(f"tabular benchmark needs a discrete space: {label!r} is a float range; "
                         "give it as a categorical of the values to tabulate")
    raise TypeError(dim)


def enumerate_space(space: Dict[str, object], prefix: str = "") -> List[dict]:
    """Every flat configuration of a discrete space (the labels of ``dimensions``), in a fixed order."""
    parts: List[List[dict]] = []
    for key, dim in space.items():
        label = f"{prefix}{key}"
        if isinstance(dim, D.ConditionalDim):
            branch = []
            for name, opt in dim.options.items():
                for sub in enumerate_space(opt.space, f"{label}/{name}/"):
                    branch.append({label: name, **sub})
            parts.append(branch)
        else:
            parts.append([{label: v} for v in _values(label, dim)])
    out = []
    for combo in itertools.product(*parts):
        point = {}
        for p in combo:
            point.update(p)
        out.append(point)
    return out


@dataclass
class Table:
    """A finished table: ``objective[key]`` for every configuration of the space."""

    spec: SearchSpec
    rows: list                    # dicts: key, params, objective, val_score, status, trial_seconds, replicate
    path: Optional[Path] = None

    def __post_init__(self):
        self.objective = {r["key"]: float(r["objective"]) for r in self.rows if r["replicate"] == 0}
        self.replicates = {}
        for r in self.rows:
            if r["replicate"] > 0:
                self.replicates.setdefault(r["key"], []).append(float(r["objective"]))

    @property
    def best(self) -> float:
        return self.spec.objective.sign * max(self.spec.objective.sign * v for v in self.objective.values())

    def lookup(self, params: dict) -> float:
        try:
            return self.objective[params_key(params)]
        except KeyError:
            raise TableError(f"configuration not in the table {self.path}: {params}") from None

    def fraction_within(self, tolerance: float) -> float:
        """Share of the table's configurations within ``tolerance`` of the best (how easy the target is)."""
        s = self.spec.objective.sign
        return sum(s * (v - self.best) >= -tolerance for v in self.objective.values()) / len(self.objective)

    def noise(self) -> dict:
        """Re-training noise from the replicate trials (same configuration, another training shard)."""
        diffs = [v - self.objective[k] for k, reps in self.replicates.items() for v in reps]
        if not diffs:
            return {"replicates": 0}
        sd = math.sqrt(sum(d * d for d in diffs) / len(diffs) / 2)     # var(a - b) = 2 var
        return {"replicates": len(diffs), "sd": sd, "max_abs_diff": max(abs(d) for d in diffs)}


def table_sha256(spec: SearchSpec) -> str:
    """sha256 of everything in ``spec`` that decides a trial's result (all but ``budget``)."""
    import hashlib

    import yaml

    data = spec.model_dump(mode="json")
    data.pop("budget", None)
    return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()


def _header(spec: SearchSpec) -> dict:
    return {"kind": KIND, "spec_sha256": table_sha256(spec), "spec_name": spec.name}


def _check_sha(found: str, spec: SearchSpec, where: Path) -> None:
    want = table_sha256(spec)
    if found != want:
        raise TableError(f"{where} was built from another spec (sha256 {found[:12]}, this spec is "
                         f"{want[:12]}); it is not reused or overwritten: move it away or choose another directory")


def load_table(path: "str | Path", spec: SearchSpec) -> Table:
    """The finished table at ``path``, checked against ``spec`` (TableError when built from another)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        t = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise TableError(f"cannot read table {path}: {err}") from None
    meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    if meta.get("kind") != KIND:
        raise TableError(f"{path} is not an autounfold tabular benchmark (no '{KIND}' metadata)")
    _check_sha(meta.get("spec_sha256", ""), spec, path)
    return Table(spec, t.to_pylist(), path)


def _read_rows(rows_path: Path, spec: SearchSpec) -> Dict[tuple, dict]:
    done: Dict[tuple, dict] = {}
    with rows_path.open() as fh:
        lines = fh.read().splitlines()
    if not lines:
        return done
    try:
        head = json.loads(lines[0])
    except ValueError:
        raise TableError(f"{rows_path}: first line is not this module's header") from None
    _check_sha(head.get("spec_sha256", ""), spec, rows_path)
    for line in lines[1:]:
        try:
            r = json.loads(line)
        except ValueError:          # a line cut by a kill: that trial runs again
            continue
        done[(r["key"], r["replicate"])] = r
    return done


def build_table(spec: SearchSpec, path: "str | Path", replicates: int = 0, on_row: Optional[Callable] = None,
                seed_label: str = "table") -> Table:
    """Train every configuration of ``spec``'s space once (and the first ``replicates`` configurations
    of a seeded shuffle a second time, for the noise estimate) as Ray tasks of ``spec.resources.cpu``
    CPUs each; reuse a finished table, resume a partial one. ``on_row(row, done, total)`` is called as
    each trial ends. Ray must be initialised by the caller."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from .trial import run_trial

    path = Path(path)
    if path.is_file():
        return load_table(path, spec)
    configs = enumerate_space(spec.space)
    order = list(range(len(configs)))
    random.Random(f"{table_sha256(spec)}:{seed_label}").shuffle(order)
    jobs = [(i, 0) for i in range(len(configs))] + [(i, 1) for i in order[:replicates]]
    rows_path = path.with_name(path.stem + ".rows.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_rows(rows_path, spec) if rows_path.is_file() else {}
    if not rows_path.is_file():
        with rows_path.open("w") as fh:
            fh.write(json.dumps(_header(spec)) + "\n")
    spec_yaml = spec.canonical_yaml()

    @ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
    def one(spec_text: str, params: dict, trial_id: str) -> dict:
        from ..spaces.spec import spec_from_yaml as _load
        s = _load(spec_text, "tabular spec", check_space=False)
        t0 = time.perf_counter()
        m = run_trial(s, params, trial_id, lambda *a: None, device="cpu", threads=max(1, int(s.resources.cpu)))
        return {"objective": float(m["objective"]), "val_score": float(m.get("val_score", float("nan"))),
                "status": m["status"], "reason": m.get("reason", ""), "trial_seconds": time.perf_counter() - t0}

    todo = [(i, r) for i, r in jobs if (params_key(configs[i]), r) not in done]
    cap = max(1, int(ray.available_resources().get("CPU", 1) // max(spec.resources.cpu, 1e-9))) * 2
    pending: Dict[object, tuple] = {}
    with rows_path.open("a") as fh:
        while todo or pending:
            while todo and len(pending) < cap:
                i, r = todo.pop(0)
                tid = f"{seed_label}-{i}" + (f"-r{r}" if r else "")
                pending[one.remote(spec_yaml, configs[i], tid)] = (i, r)
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, r = pending.pop(ready[0])
            res = ray.get(ready[0])
            row = {"key": params_key(configs[i]), "params": json.dumps(configs[i], sort_keys=True),
                   "replicate": r, **res}
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done[(row["key"], r)] = row
            if on_row is not None:
                on_row(row, len(done), len(jobs))
    rows = [done[(params_key(configs[i]), r)] for i, r in jobs]
    cols = ["key", "params", "replicate", "objective", "val_score", "status", "reason", "trial_seconds"]
    table = pa.table({c: [row[c] for row in rows] for c in cols})
    meta = {**_header(spec), "spec_yaml": spec_yaml, "configurations": str(len(configs)),
            "replicates": str(replicates), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)                       # the table appears whole or not at all
    return Table(spec, rows, path)


def spec_of_table(path: "str | Path") -> SearchSpec:
    """The spec a table was built from (read from its metadata)."""
    import pyarrow.parquet as pq

    meta = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
    if meta.get("kind") != KIND:
        raise TableError(f"{path} is not an autounfold tabular benchmark")
    return spec_from_yaml(meta["spec_yaml"], f"{path}: spec", check_space=False)
