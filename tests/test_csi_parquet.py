"""CSI in Parquet: round trip (zero-copy float32 tensor column), schema errors naming the column,
the Parquet channel source, and the csi CLI."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from autounfold.channels import CorrelatedRayleigh
from autounfold.channels.parquet import ParquetSource, inspect_csi, read_csi, write_csi
from autounfold.cli import app
from autounfold.errors import InputError


@pytest.fixture
def csi_file(tmp_path):
    batch = CorrelatedRayleigh(n_tx=8, n_rx=4).sample(50, 0)
    ts = 1_700_000_000_000 + 10 * np.arange(50)[::-1]               # written newest first
    path = write_csi(tmp_path / "csi.parquet", batch, ts, ["cellA"] * 50, [f"ue{i % 5}" for i in range(50)])
    return path, batch, ts


def test_round_trip_is_exact_and_typed(csi_file):
    path, batch, ts = csi_file
    schema = pq.read_schema(path)
    assert schema.field("H").type == pa.fixed_shape_tensor(pa.float32(), [4, 8, 2])
    assert schema.metadata[b"autounfold.csi_version"] == b"1"
    rec = read_csi(path)
    assert rec.batch.H.dtype == torch.complex64 and torch.equal(rec.batch.H, batch.H)
    assert torch.equal(rec.batch.noise_var, batch.noise_var) and torch.equal(rec.batch.snr_db, batch.snr_db)
    np.testing.assert_array_equal(rec.timestamp_ms, ts)
    assert rec.cell_id[0] == "cellA" and rec.ue_id[7] == "ue2"
    s = inspect_csi(path)
    assert (s["rows"], s["n_rx"], s["n_tx"], s["cells"], s["ues"]) == (50, 4, 8, ["cellA"], 5)


def test_source_samples_rows_and_walks_time_order(csi_file):
    path, batch, ts = csi_file
    src = ParquetSource(path)
    assert (src.n_rx, src.n_tx, len(src)) == (4, 8, 50)
    assert np.all(np.diff(src.timestamp_ms) > 0)
    a, b = src.sample(16, 3), src.sample(16, 3)
    assert torch.equal(a.H, b.H)                                     # seeded
    rows = {tuple(torch.view_as_real(h).flatten()[:4].tolist()) for h in batch.H}
    assert all(tuple(torch.view_as_real(h).flatten()[:4].tolist()) in rows for h in a.H)
    windows = list(src.windows(20))
    assert [w.H.shape[0] for w in windows] == [20, 20, 10]
    assert torch.equal(windows[0].H[0], batch.H[-1])                  # oldest first


def _write(tmp_path, table, name="bad.parquet"):
    p = tmp_path / name
    pq.write_table(table, p)
    return p


@pytest.mark.parametrize("case, message", [
    ("no_h", "column 'H' is missing"),
    ("complex_as_list", "column 'H' has type list<"),
    ("wrong_trailing", "column 'H' has tensor shape [4, 8, 3]"),
    ("nan", "column 'H' has NaN or Inf in 1 row(s), first at row 2"),
    ("neg_noise", "column 'noise_var' must be finite and > 0"),
    ("no_noise", "needs column 'noise_var'"),
    ("no_time", "column 'timestamp' is missing"),
])
def test_schema_errors_name_the_column(tmp_path, case, message):
    n = 4
    H = np.random.default_rng(0).standard_normal((n, 4, 8, 2)).astype(np.float32)
    cols = {"H": pa.FixedShapeTensorArray.from_numpy_ndarray(H), "noise_var": pa.array(np.ones(n, np.float32)),
            "timestamp": pa.array(np.arange(n), pa.timestamp("ms", tz="UTC"))}
    if case == "no_h":
        cols.pop("H")
    elif case == "complex_as_list":
        cols["H"] = pa.array([list(range(3))] * n, pa.list_(pa.float32()))
    elif case == "wrong_trailing":
        cols["H"] = pa.FixedShapeTensorArray.from_numpy_ndarray(np.zeros((n, 4, 8, 3), np.float32))
    elif case == "nan":
        H[2, 1, 1, 0] = np.nan
        cols["H"] = pa.FixedShapeTensorArray.from_numpy_ndarray(H)
    elif case == "neg_noise":
        cols["noise_var"] = pa.array(np.full(n, -1.0, np.float32))
    elif case == "no_noise":
        cols.pop("noise_var")
    elif case == "no_time":
        cols.pop("timestamp")
    p = _write(tmp_path, pa.table(cols))
    with pytest.raises(InputError) as err:
        read_csi(p)
    assert str(p) in str(err.value) and message in str(err.value), str(err.value)


def test_truncated_file_is_a_clear_error(csi_file, tmp_path):
    path, _, _ = csi_file
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_csi(cut)


def test_csi_cli_write_and_inspect(tmp_path):
    runner = CliRunner()
    out = tmp_path / "as40.parquet"
    r = runner.invoke(app, ["csi", "write", "--out", str(out), "--rows", "64", "--set", "problem.channel.angular_spread_deg=40",
                            "--set", "problem.channel.n_tx=16", "--set", "problem.channel.n_rx=4", "--cell-id", "c1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["csi", "inspect", str(out)])
    assert r.exit_code == 0 and '"rows": 64' in r.output and '"n_tx": 16' in r.output
    r = runner.invoke(app, ["csi", "inspect", str(tmp_path / "missing.parquet")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(app, ["csi", "write", "--out", str(tmp_path / "x.parquet"), "--rows", "0"])
    assert r.exit_code == 2 and not (tmp_path / "x.parquet").exists()
