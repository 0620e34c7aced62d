"""Robust PCA in a known sparsifying domain (the survey's comparative study, section V, eqs. 23-27).

X = L* R*^T + Psi Y*: a rank-r matrix plus a component that is sparse after Psi. The solver's
decision is s = (L, R, Y) with L (n1, r), R (n2, r), Y (n1, n2), found from the factorised,
l1-relaxed objective

    min 1/2 ||L R^T + Psi Y - X||_F^2 + lam ||Y||_1                                    (24)

by the alternating rule of ``algorithms.rpca`` (soft-thresholding for Y, scaled gradient steps for L
and R). The solver is told Psi_hat: the true Psi (case a), or a noisy copy of it (case b, the
survey's "mismatched objective parameters": ``psi_mismatch`` > 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import torch
from pydantic import Field, field_validator

from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from ..seeding import as_generator, generator
from .base import Problem, ProblemConfig, batch_scalar


class RPCAConfig(ProblemConfig):
    """``problem:`` of a robust-PCA experiment (``name: rpca``)."""

    name: Literal["rpca"] = "rpca"
    n1: int = Field(100, ge=2)
    n2: int = Field(100, ge=2)
    rank: int = Field(5, ge=1)
    sparsity: float = Field(0.1, gt=0, lt=1)        # share of non-zero entries of Y*
    outlier_scale: float = Field(3.0, gt=0)         # Y* entries uniform in [-s, s] x the rms of L* R*^T
    psi: Literal["orthogonal", "identity"] = "orthogonal"
    psi_mismatch: float = Field(0.0, ge=0)          # the solver's Psi_hat = Psi + e G / sqrt(n1), G Gaussian
    lam: float = Field(0.3, gt=0)                   # the classical threshold zeta_0 (soft-threshold level of Y)
    lam_decay: float = Field(0.7, gt=0, le=1)       # zeta_k = lam * lam_decay^k (1: a fixed threshold)
    matrix_seed: int = 0

    @field_validator("rank")
    @classmethod
    def _rank(cls, v, info):
        n1, n2 = info.data.get("n1", 2), info.data.get("n2", 2)
        if v >= min(n1, n2):
            raise ValueError(f"must be below min(n1, n2) = {min(n1, n2)} (got {v})")
        return v


@dataclass
class RPCABatch:
    """X: (B, n1, n2) float32 observations; V, Y: (B, n1, n2) float32 true low-rank and sparse parts
    (None for external inputs)."""

    X: torch.Tensor
    V: Optional[torch.Tensor]
    Y: Optional[torch.Tensor]

    def to(self, device):
        return RPCABatch(self.X.to(device), None if self.V is None else self.V.to(device),
                         None if self.Y is None else self.Y.to(device))

    @property
    def batch_size(self):
        return self.X.shape[0]


def soft(z: torch.Tensor, t) -> torch.Tensor:
    """Entrywise soft thresholding at t (a scalar or a (B,) tensor)."""
    return torch.sign(z) * torch.clamp(z.abs() - batch_scalar(t, z), min=0.0)


@PROBLEMS.register
class RPCAProblem(Problem):
    """Robust PCA, X = L R^T + Psi Y (module docstring). The iterate is packed as one (B, n1 r + n2 r +
    n1 n2) tensor (``pack`` / ``unpack``); a model called as ``model(X)`` returns (V, Y), the low-rank
    estimate L R^T and the sparse component, both (B, n1, n2) float32."""

    name = "rpca"
    Config = RPCAConfig
    sense = -1.0
    score_key = "lowrank_nmse_db"
    score_sign = -1.0
    metrics = {"lowrank_nmse_db": "10 log10(sum ||L R^T - V*||^2 / sum ||V*||^2), the survey's loss (dB)",
               "sparse_nmse_db": "the same for the sparse component Y", "objective_mean": "mean of eq. (24)",
               "feasible": "all entries finite"}
    classical = ("rpca_tuned",)
    sampling_keys = ("sparsity", "outlier_scale")
    scenarios = {"nominal": ("nominal (the trained setting)", {}),
                 "mismatch": ("the solver's Psi with a relative error of 0.3", {"psi_mismatch": 0.3}),
                 "denser": ("20 % outliers", {"sparsity": 0.2})}
    inputs = "X (B, n1, n2) float32"
    outputs = "(V (B, n1, n2), Y (B, n1, n2)) float32"

    @classmethod
    def from_config(cls, cfg: RPCAConfig) -> "RPCAProblem":
        return cls(**{k: getattr(cfg, k) for k in ("n1", "n2", "rank", "sparsity", "outlier_scale", "psi",
                                                   "psi_mismatch", "lam", "lam_decay", "matrix_seed")})

    @classmethod
    def memory_estimate(cls, cfg: RPCAConfig, batch: int) -> dict:
        return {"problem.n1 x problem.n1": 8 * 4 * cfg.n1 * cfg.n1,
                "batch x n1 x n2": 4 * 8 * batch * cfg.n1 * cfg.n2}

    def __init__(self, n1: int = 100, n2: int = 100, rank: int = 5, sparsity: float = 0.1, outlier_scale: float = 3.0,
                 psi: str = "orthogonal", psi_mismatch: float = 0.0, lam: float = 0.3, lam_decay: float = 0.7,
                 matrix_seed: int = 0):
        if not (1 <= rank < min(n1, n2)):
            raise ConfigError(f"rpca: rank must be in [1, min(n1, n2)) (got rank={rank}, n1={n1}, n2={n2})")
        if not 0 < sparsity < 1:
            raise ConfigError(f"rpca: sparsity must be a share in (0, 1) (got {sparsity})")
        if psi not in ("orthogonal", "identity"):
            raise ConfigError(f"rpca: psi must be 'orthogonal' or 'identity' (got {psi!r})")
        self.n1, self.n2, self.rank, self.sparsity = n1, n2, rank, sparsity
        if not (lam > 0 and 0 < lam_decay <= 1):
            raise ConfigError(f"rpca: lam must be > 0 and lam_decay in (0, 1] (got {lam}, {lam_decay})")
        self.outlier_scale, self.psi_kind, self.psi_mismatch, self.lam, self.lam_decay, self.matrix_seed = \
            outlier_scale, psi, psi_mismatch, lam, lam_decay, matrix_seed
        if psi == "identity":
            self.Psi = torch.eye(n1)
        else:
            G = torch.randn(n1, n1, generator=generator(matrix_seed, "rpca-psi"), dtype=torch.float64)
            Q, Rq = torch.linalg.qr(G)
            self.Psi = (Q * torch.sign(torch.diagonal(Rq))).float()
        E = torch.randn(n1, n1, generator=generator(matrix_seed, "rpca-psi-mismatch"))
        self.Psi_hat = self.Psi + psi_mismatch * E / math.sqrt(n1)       # what the solver is told
        if torch.linalg.matrix_rank(self.Psi_hat.double()) < n1:
            raise ConfigError(f"rpca: psi_mismatch={psi_mismatch} makes the solver's Psi singular")
        self.Psi_hat_inv = torch.linalg.inv(self.Psi_hat.double()).float()

    def settings(self):
        return {"n1": self.n1, "n2": self.n2, "rank": self.rank, "sparsity": self.sparsity,
                "outlier_scale": self.outlier_scale, "psi": self.psi_kind, "psi_mismatch": self.psi_mismatch,
                "lam": self.lam, "lam_decay": self.lam_decay, "matrix_seed": self.matrix_seed}

    def signature(self) -> dict:
        return {"problem": self.name, "n1": self.n1, "n2": self.n2, "rank": self.rank, "psi": self.psi_kind,
                "matrix_seed": self.matrix_seed}

    def dims(self, inst) -> dict:
        return {"n1": inst.X.shape[1], "n2": inst.X.shape[2]}

    # ---- data ---------------------------------------------------------------------------------
    def sample(self, batch: int, seed, device="cpu") -> RPCABatch:
        """L*, R* with N(0, 1) entries, V* = L* R*^T / sqrt(r) (unit-variance entries); Y* with each
        entry non-zero with probability ``sparsity``, uniform in [-outlier_scale, outlier_scale]."""
        g = as_generator(seed)
        L = torch.randn(batch, self.n1, self.rank, generator=g)
        R = torch.randn(batch, self.n2, self.rank, generator=g)
        V = L @ R.transpose(1, 2) / math.sqrt(self.rank)
        mask = torch.rand(batch, self.n1, self.n2, generator=g) < self.sparsity
        Y = (torch.rand(batch, self.n1, self.n2, generator=g) * 2 - 1) * self.outlier_scale * mask
        X = V + self.Psi @ Y
        return RPCABatch(X, V, Y).to(device)

    def instance(self, X: torch.Tensor) -> RPCABatch:
        if not isinstance(X, torch.Tensor) or X.dim() != 3 or X.is_complex() or X.shape[1] != self.n1:
            raise InputError(f"X must be a real tensor of shape (B, {self.n1}, n2), got "
                             f"{tuple(getattr(X, 'shape', ()))} {getattr(X, 'dtype', '')}")
        if X.shape[2] <= self.rank:
            raise InputError(f"X has n2={X.shape[2]} columns; a rank-{self.rank} model needs more")
        if not torch.isfinite(X).all():
            raise InputError("X contains NaN or Inf")
        return RPCABatch(X.float(), None, None)

    # ---- the packed iterate ----------------------------------------------------------------------
    def pack(self, L, R, Y) -> torch.Tensor:
        B = L.shape[0]
        return torch.cat([L.reshape(B, -1), R.reshape(B, -1), Y.reshape(B, -1)], -1)

    def unpack(self, x: torch.Tensor, inst) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, n1, n2 = inst.X.shape
        r = self.rank
        L = x[:, :n1 * r].view(B, n1, r)
        R = x[:, n1 * r:(n1 + n2) * r].view(B, n2, r)
        Y = x[:, (n1 + n2) * r:].view(B, n1, n2)
        return L, R, Y

    def thresholds(self, num: int) -> list:
        """The classical threshold schedule zeta_k = lam * lam_decay^k, k = 0..num-1."""
        return [self.lam * self.lam_decay ** k for k in range(num)]

    def operators(self, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The solver's (Psi_hat, Psi_hat^-1), on ``like``'s device."""
        return self.Psi_hat.to(like.device), self.Psi_hat_inv.to(like.device)

    def init(self, inst, method=None, seed=0):
        """Y = 0 and the rank-r truncated SVD of X split evenly: L = U S^1/2, R = V S^1/2."""
        U, S, Vh = torch.linalg.svd(inst.X, full_matrices=False)
        r = self.rank
        s = S[:, :r].sqrt().unsqueeze(1)
        return self.pack(U[:, :, :r] * s, Vh[:, :r].transpose(1, 2) * s, torch.zeros_like(inst.X))

    def output(self, x, inst):
        L, R, Y = self.unpack(x, inst)
        return L @ R.transpose(1, 2), Y

    # ---- objective and metrics -----------------------------------------------------------------
    def objective(self, x, inst):
        L, R, Y = self.unpack(x, inst)
        Psi, _ = self.operators(x)
        res = L @ R.transpose(1, 2) + Psi @ Y - inst.X
        return 0.5 * res.square().sum((1, 2)) + self.lam * Y.abs().sum((1, 2))

    def feasible(self, x, inst, rtol: float = 0.0):
        return torch.isfinite(x).all(-1)

    def ground_truth(self, inst):
        """The true low-rank part V* where known (``summarize`` reads V* and Y* from the instance)."""
        return inst.V

    def supervised_target(self, inst):
        if inst.V is None:
            raise InputError("supervised training needs instances with the true low-rank part")
        return inst.V

    def supervised_loss(self, x, inst, V_ref):
        """The survey's loss: the Frobenius error of the low-rank component, relative, (B,)."""
        L, R, _ = self.unpack(x, inst)
        V = L @ R.transpose(1, 2)
        return (V - V_ref).square().sum((1, 2)) / V_ref.square().sum((1, 2)).clamp_min(1e-12)

    def loss_scale(self, inst):
        return 0.5 * inst.X.square().sum((1, 2)).clamp_min(1e-12)

    def summarize(self, x, inst, ref=None) -> dict:
        if inst.V is None:
            raise InputError("rpca metrics need instances with the true components (sampled ones)")
        L, R, Y = self.unpack(x, inst)
        V = L @ R.transpose(1, 2)

        def db(a, b):
            err, norm = float((a - b).double().square().sum()), float(b.double().square().sum())
            return 10.0 * math.log10(max(err, 1e-30) / max(norm, 1e-30))

        return {"lowrank_nmse_db": db(V, inst.V), "sparse_nmse_db": db(Y, inst.Y),
                "objective_mean": float(self.objective(x, inst).double().mean()),
                "feasible": bool(self.feasible(x, inst).all())}
