"""Recorded CSI in Parquet (pyarrow), read back zero-copy, and a ``ChannelSource`` over it.

Schema (one row per channel realisation):

| column | type | |
|---|---|---|
| ``H`` | ``fixed_shape_tensor(float32, [n_rx, n_tx, 2])`` | the complex channel with a trailing (re, im) axis |
| ``noise_var`` | ``float32`` | noise variance (> 0); with ``snr_db`` only, derived as ``power / 10**(snr_db/10)`` |
| ``snr_db`` | ``float32`` | optional when ``noise_var`` is present |
| ``timestamp`` | ``timestamp[ms, UTC]`` | when the CSI was measured |
| ``cell_id``, ``ue_id`` | ``string`` | optional |

The file's key-value metadata carries ``autounfold.csi_version`` and the transmit ``power``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..seeding import as_generator
from .base import ChannelBatch, ChannelSource, check_channel

CSI_VERSION = "1"


@dataclass
class CsiRecords:
    """A CSI file in memory: the channels plus their timestamps (ms since epoch, int64) and ids."""

    batch: ChannelBatch
    timestamp_ms: np.ndarray
    cell_id: Optional[List[Optional[str]]]
    ue_id: Optional[List[Optional[str]]]
    power: float


def csi_schema(n_rx: int, n_tx: int):
    import pyarrow as pa
    return pa.schema([
        pa.field("H", pa.fixed_shape_tensor(pa.float32(), [n_rx, n_tx, 2]), nullable=False),
        pa.field("noise_var", pa.float32(), nullable=False),
        pa.field("snr_db", pa.float32()),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("cell_id", pa.string()),
        pa.field("ue_id", pa.string()),
    ])


def write_csi(path: "str | Path", batch: ChannelBatch, timestamp_ms: Optional[Sequence[int]] = None,
              cell_id: Optional[Sequence[Optional[str]]] = None, ue_id: Optional[Sequence[Optional[str]]] = None,
              power: float = 1.0) -> Path:
    """Write ``batch`` to ``path`` atomically (a temporary file renamed into place).

    ``timestamp_ms`` defaults to one millisecond apart from now; ids are optional."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_channel(batch.H, batch.noise_var)
    B, n_rx, n_tx = batch.H.shape
    H = torch.view_as_real(batch.H.detach().cpu().to(torch.complex64).resolve_conj()).contiguous().numpy()
    h_arr = pa.FixedShapeTensorArray.from_numpy_ndarray(H)          # type fixed_shape_tensor(float32, [n_rx, n_tx, 2])
    if timestamp_ms is None:
        import time
        start = int(time.time() * 1000)
        timestamp_ms = np.arange(start, start + B, dtype=np.int64)
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    for name, col in (("timestamp_ms", ts), ("cell_id", cell_id), ("ue_id", ue_id)):
        if col is not None and len(col) != B:
            raise InputError(f"write_csi: {name} has {len(col)} entries for {B} channels")
    table = pa.Table.from_arrays(
        [h_arr, pa.array(batch.noise_var.detach().cpu().float().numpy()),
         pa.array(batch.snr_db.detach().cpu().float().numpy()), pa.array(ts, pa.timestamp("ms", tz="UTC")),
         pa.array(list(cell_id) if cell_id is not None else [None] * B, pa.string()),
         pa.array(list(ue_id) if ue_id is not None else [None] * B, pa.string())],
        schema=csi_schema(n_rx, n_tx).with_metadata({"autounfold.csi_version": CSI_VERSION,
                                                     "autounfold.power": json.dumps(float(power))}))
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the Parquet file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fail(path, msg: str):
    raise InputError(f"{path}: {msg}")


def read_csi(path: "str | Path", power: Optional[float] = None) -> CsiRecords:
    """Read and validate a CSI file; H comes back as a complex64 view of the Arrow buffer.

    Raises InputError naming the file and the column for a missing or mistyped column, NaN/Inf in
    H, a non-positive noise variance, or a file that is not Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        _fail(path, "is a directory; expected a CSI Parquet file")
    if not path.is_file():
        _fail(path, "no such file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        _fail(path, f"not a readable Parquet file ({type(err).__name__}: {str(err)[:200]})")
    if table.num_rows == 0:
        _fail(path, "holds no rows")
    names = table.column_names
    expected_h = "a float32 fixed_shape_tensor of shape (n_rx, n_tx, 2) (complex CSI with a trailing (re, im) axis)"
    if "H" not in names:
        _fail(path, f"column 'H' is missing; expected {expected_h} (columns: {', '.join(names)})")
    h_type = table.schema.field("H").type
    if not isinstance(h_type, pa.FixedShapeTensorType) or h_type.value_type != pa.float32():
        _fail(path, f"column 'H' has type {h_type}; expected {expected_h}")
    shape = list(h_type.shape)
    if len(shape) != 3 or shape[2] != 2:
        _fail(path, f"column 'H' has tensor shape {shape}; expected [n_rx, n_tx, 2]")
    if "timestamp" not in names:
        _fail(path, "column 'timestamp' is missing; expected timestamp[ms] (when each CSI was measured)")
    if not pa.types.is_timestamp(table.schema.field("timestamp").type):
        _fail(path, f"column 'timestamp' has type {table.schema.field('timestamp').type}; expected timestamp[ms]")
    meta = table.schema.metadata or {}
    try:
        file_power = json.loads(meta.get(b"autounfold.power", b"1.0"))
    except ValueError:
        _fail(path, f"metadata 'autounfold.power' is not valid JSON ({meta.get(b'autounfold.power')[:50]!r})")
    if isinstance(file_power, bool) or not isinstance(file_power, (int, float)) or not math.isfinite(file_power) \
            or file_power <= 0:
        _fail(path, f"metadata 'autounfold.power' must be a finite number > 0 (got {file_power!r})")
    power = float(power) if power is not None else float(file_power)
    h_col = table.column("H").combine_chunks()
    if h_col.null_count:
        _fail(path, f"column 'H' has {h_col.null_count} null rows")
    H_np = np.ascontiguousarray(h_col.to_numpy_ndarray())   # (N, n_rx, n_tx, 2) float32, zero-copy from Arrow
    import warnings
    with warnings.catch_warnings():
        # the tensor views Arrow's read-only buffer: nothing in autounfold writes into H in place
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        H = torch.view_as_complex(torch.from_numpy(H_np))
    n = H.shape[0]
    if n == 0:
        _fail(path, "holds no rows")
    bad = (~torch.isfinite(torch.view_as_real(H)).reshape(n, -1).all(1)).nonzero().flatten()
    if len(bad):
        _fail(path, f"column 'H' has NaN or Inf in {len(bad)} row(s), first at row {int(bad[0])}")
    if "noise_var" in names:
        nv = _float_column(table, "noise_var", path)
        snr = _float_column(table, "snr_db", path) if "snr_db" in names else 10.0 * torch.log10(power / nv)
    elif "snr_db" in names:
        snr = _float_column(table, "snr_db", path)
        nv = power / torch.pow(10.0, snr / 10.0)
    else:
        _fail(path, "needs column 'noise_var' (float32 > 0) or 'snr_db' (float32)")
    if not torch.isfinite(nv).all() or (nv <= 0).any():
        _fail(path, "column 'noise_var' must be finite and > 0 in every row")
    ts = table.column("timestamp").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    ids = {c: (table.column(c).to_pylist() if c in names else None) for c in ("cell_id", "ue_id")}
    return CsiRecords(ChannelBatch(H, nv.float(), snr.float()), ts, ids["cell_id"], ids["ue_id"], power)


def _float_column(table, name, path) -> torch.Tensor:
    import pyarrow as pa
    col = table.column(name)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        _fail(path, f"column {name!r} has type {col.type}; expected float32")
    if col.null_count:
        _fail(path, f"column {name!r} has {col.null_count} null rows")
    return torch.from_numpy(col.to_numpy(zero_copy_only=False).astype(np.float32))


def inspect_csi(path: "str | Path") -> dict:
    """A summary of a CSI file (validated): rows, shape, SNR range, time span, ids."""
    rec = read_csi(path)
    H = rec.batch.H
    ts = rec.timestamp_ms
    return {"path": str(path), "rows": int(H.shape[0]), "n_rx": int(H.shape[1]), "n_tx": int(H.shape[2]),
            "power": rec.power, "snr_db": [float(rec.batch.snr_db.min()), float(rec.batch.snr_db.max())],
            "mean_channel_gain": float(H.abs().square().sum((-2, -1)).mean() / (H.shape[1] * H.shape[2])),
            "time_span_ms": [int(ts.min()), int(ts.max())],
            "cells": sorted({c for c in rec.cell_id or [] if c is not None}),
            "ues": len({u for u in rec.ue_id or [] if u is not None})}


class ParquetSource(ChannelSource):
    """Recorded CSI as a ``ChannelSource``: ``sample`` draws rows (with replacement, seeded);
    ``windows(size)`` walks the rows in timestamp order, as a monitor sees them."""

    name = "parquet"

    def __init__(self, paths: "str | Path | Sequence[str | Path]", power: Optional[float] = None):
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise ConfigError("parquet: give at least one CSI file")
        recs = [read_csi(p, power) for p in paths]
        shapes = {tuple(r.batch.H.shape[1:]) for r in recs}
        if len(shapes) != 1:
            raise InputError(f"parquet: the files hold channels of different shapes {sorted(shapes)} (n_rx, n_tx)")
        H = torch.cat([r.batch.H for r in recs])
        nv = torch.cat([r.batch.noise_var for r in recs])
        snr = torch.cat([r.batch.snr_db for r in recs])
        ts = np.concatenate([r.timestamp_ms for r in recs])
        order = torch.from_numpy(np.argsort(ts, kind="stable"))
        self.records = ChannelBatch(H[order], nv[order], snr[order])
        self.timestamp_ms = ts[order.numpy()]
        n_rx, n_tx = shapes.pop()
        snr_range = (float(snr.min()), float(snr.max()))
        super().__init__(n_tx, n_rx, snr_range if math.isfinite(snr_range[0]) else (0.0, 0.0), recs[0].power)
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return int(self.records.H.shape[0])

    def sample(self, batch: int, seed, device="cpu") -> ChannelBatch:
        if batch < 1:
            raise ConfigError(f"batch must be >= 1 (got {batch})")
        idx = torch.randint(0, len(self), (batch,), generator=as_generator(seed))
        return self.records[idx].to(device)

    def windows(self, size: int, device="cpu") -> Iterator[ChannelBatch]:
        """Consecutive windows of ``size`` rows in time order (the last one may be shorter)."""
        if size < 1:
            raise ConfigError(f"window size must be >= 1 (got {size})")
        for start in range(0, len(self), size):
            yield self.records[start:start + size].to(device)

    def describe(self) -> dict:
        return {**super().describe(), "paths": self.paths, "rows": len(self)}
