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


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
