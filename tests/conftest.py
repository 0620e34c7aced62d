import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
import pytest
import torch

from autounfold.channels import CorrelatedRayleigh
from autounfold.problems import BeamformingProblem


@pytest.fixture
def small_problem():
    """8 x 4 correlated channel, total power: small enough for exact checks in milliseconds."""
    return BeamformingProblem(CorrelatedRayleigh(n_tx=8, n_rx=4, snr_db=(0.0, 20.0)))


@pytest.fixture
def nominal_problem():
    return BeamformingProblem(CorrelatedRayleigh(n_tx=64, n_rx=16))


@pytest.fixture
def cli():
    """Run the CLI in this process with typer's runner: ``cli(*args)`` returns a result with
    ``exit_code``, ``stdout`` and ``stderr`` apart. The same code path as ``python -m autounfold.cli``,
    without the ~2 s of imports a new interpreter pays per call (for checks of bad input by the dozen)."""
    from typer.testing import CliRunner

    from autounfold.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def refuse(monkeypatch):
    """``refuse("autounfold.evaluation.m.run_x")``: a call of that function fails the test at once. For bad
    input that must be refused before any work: run in-process, a benchmark that got past its checks would
    otherwise go on for many minutes with no timeout."""
    def _refuse(target: str):
        def stop(*args, **kwargs):
            raise AssertionError(f"{target} started: the bad input was not refused")
        monkeypatch.setattr(target, stop)
    return _refuse


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
