"""Sparse recovery: y = A x + n with an s-sparse x, solved as the LASSO."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from pydantic import Field

from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from ..seeding import as_generator, generator
from .base import Problem, ProblemConfig, ReferenceSolver, batch_scalar


class LassoConfig(ProblemConfig):
    """``problem:`` of a sparse-recovery experiment (``name: lasso``)."""

    name: Literal["lasso"] = "lasso"
    n: int = Field(50, ge=1)
    m: int = Field(25, ge=1)
    sparsity: float = Field(5, gt=0)
    snr_db: float = 20.0
    lam: float = Field(0.05, gt=0)
    matrix_seed: int = 0


@dataclass
class SparseBatch:
    """y: (B, M) float32 measurements; x_true: (B, N) float32 or None; noise_var: (B,) float32."""

    y: torch.Tensor
    x_true: Optional[torch.Tensor]
    noise_var: torch.Tensor

    def to(self, device):
        return SparseBatch(self.y.to(device), None if self.x_true is None else self.x_true.to(device),
                           self.noise_var.to(device))

    @property
    def batch_size(self):
        return self.y.shape[0]


@PROBLEMS.register
class LassoProblem(Problem):
    """min_x 1/2 ||y - A x||^2 + lam ||x||_1 with a fixed A (M, N), columns of unit norm.

    Args:
        n: signal length N.  m: measurements M.
        sparsity: exact number of non-zeros s (int >= 1), or a Bernoulli probability p in (0, 1).
        snr_db: measurement SNR, ||A x||^2 / E||n||^2.
        lam: LASSO weight.  matrix_seed: seed of A (the same A for training, validation, test).
    """

    name = "lasso"
    Config = LassoConfig
    sense = -1.0
    scalings = ("lipschitz",)
    default_scaling = "lipschitz"
    score_key = "nmse_db"
    score_sign = -1.0
    metrics = {"nmse_db": "10 log10(sum ||x - x_true||^2 / sum ||x_true||^2) (against the reference "
                          "where x_true is unknown)", "objective_mean": "mean LASSO objective",
               "feasible": "all entries finite"}
    classical = ("ista", "fista", "admm_tuned")
    sampling_keys = ("snr_db", "sparsity")
    scenarios = {"nominal": ("nominal (the trained setting)", {}),
                 "lowsnr": ("measurement SNR 10 dB", {"snr_db": 10.0}),
                 "highsnr": ("measurement SNR 40 dB", {"snr_db": 40.0})}
    reference_solver = ReferenceSolver(extrapolation="nesterov", normalize="lipschitz",
                                       params=(("step", 1.0), ("momentum", "fista")), tol=1e-7)
    inputs = "y (B, m) float32"
    outputs = "x (B, n) float32"

    @classmethod
    def from_config(cls, cfg: LassoConfig) -> "LassoProblem":
        return cls(n=cfg.n, m=cfg.m, sparsity=cfg.sparsity, snr_db=cfg.snr_db, lam=cfg.lam, matrix_seed=cfg.matrix_seed)

    @classmethod
    def memory_estimate(cls, cfg: LassoConfig, batch: int) -> dict:
        return {"problem.n x problem.m": 8 * 3 * cfg.n * cfg.m + 4 * cfg.n * cfg.n,
                "problem.n x batch": 4 * 4 * batch * (cfg.n + cfg.m)}

    def __init__(self, n: int = 50, m: int = 25, sparsity: float = 5, snr_db: float = 20.0,
                 lam: float = 0.05, matrix_seed: int = 0):
        if n < 1 or m < 1:
            raise ConfigError(f"lasso: n and m must be >= 1 (got n={n}, m={m})")
        if not (0 < sparsity < 1 or (float(sparsity).is_integer() and 1 <= sparsity <= n)):
            raise ConfigError(f"lasso: sparsity must be an integer count in [1, n={n}] or a probability in (0, 1) (got {sparsity})")
        if not lam > 0:
            raise ConfigError(f"lasso: lam must be > 0 (got {lam})")
        self.n, self.m, self.sparsity, self.snr_db, self.lam, self.matrix_seed = n, m, sparsity, snr_db, lam, matrix_seed
        A = torch.randn(m, n, generator=generator(matrix_seed, "lasso-matrix"))
        self.A = A / torch.linalg.vector_norm(A, dim=0, keepdim=True)
        self.lipschitz = float(torch.linalg.matrix_norm(self.A.double(), ord=2) ** 2)

    def settings(self):
        return {"n": self.n, "m": self.m, "sparsity": self.sparsity, "snr_db": self.snr_db,
                "lam": self.lam, "matrix_seed": self.matrix_seed}

    def signature(self) -> dict:
        return {"problem": self.name, "n": self.n, "m": self.m, "matrix_seed": self.matrix_seed}

    def sample(self, batch: int, seed, device="cpu") -> SparseBatch:
        """x: support uniform at random (s entries, or each entry with probability p), values N(0, 1)."""
        g = as_generator(seed)
        if self.sparsity < 1:
            mask = torch.rand(batch, self.n, generator=g) < self.sparsity
        else:
            order = torch.rand(batch, self.n, generator=g).argsort(-1)
            mask = order < int(self.sparsity)
        x = torch.randn(batch, self.n, generator=g) * mask
        clean = x @ self.A.T
        noise_var = clean.square().mean(-1).clamp_min(1e-12) / 10 ** (self.snr_db / 10)
        y = clean + torch.randn(batch, self.m, generator=g) * noise_var.sqrt().unsqueeze(-1)
        return SparseBatch(y, x, noise_var).to(device)

    def instance(self, y: torch.Tensor) -> SparseBatch:
        if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[-1] != self.m or y.is_complex():
            raise InputError(f"y must be a real tensor of shape (B, {self.m}), got "
                             f"{tuple(getattr(y, 'shape', ()))} {getattr(y, 'dtype', '')}")
        if not torch.isfinite(y).all():
            raise InputError("y contains NaN or Inf")
        return SparseBatch(y.float(), None, torch.full((y.shape[0],), float("nan"), device=y.device))

    def _A(self, like):
        return self.A.to(like.device)

    def objective(self, x, inst):
        A = self._A(x)
        return 0.5 * (inst.y - x @ A.T).square().sum(-1) + self.lam * x.abs().sum(-1)

    def gradient(self, x, inst, operator=None):
        """Gradient of the smooth part, A^T (A x - y), (B, N).

        ``operator`` replaces the problem's matrices (learned objective parameters, LISTA):
        {"gram": Q (N, N), "backproj": S (N, M)} gives Q x - S y; {"backproj": S} alone gives the
        coupled form S (A x - y) (LISTA-CP).
        """
        A = self._A(x)
        op = operator or {}
        if "gram" in op:
            return x @ op["gram"].T - inst.y @ op["backproj"].T
        S = op.get("backproj", A.T)
        return (x @ A.T - inst.y) @ S.T

    def curvature(self, x, inst, mode: str = "lipschitz"):
        """The global Lipschitz constant of the smooth part, ||A||_2^2, as (B,)."""
        return torch.full((x.shape[0],), self.lipschitz, device=x.device)

    def prox(self, z, inst, threshold=None, support=None):
        """Soft thresholding with ``threshold`` (scalar or (B,)); identity when it is None.

        ``support`` (a fraction p in [0, 1), LISTA-CPSS / ALISTA's support selection, Chen et al.
        2018): in each sample the ceil(p N) largest entries of |z| above the threshold pass through
        unshrunk (they are taken to be on the support); the rest are soft-thresholded. The selection
        is a mask of the input, so gradients flow through the kept values only.
        """
        if threshold is None:
            return z
        t = batch_scalar(threshold, z)
        shrunk = torch.sign(z) * torch.clamp(z.abs() - t, min=0.0)
        p = 0.0 if support is None else float(support)
        count = min(int(math.ceil(p * z.shape[-1] - 1e-9)), z.shape[-1])
        if count <= 0:
            return shrunk
        with torch.no_grad():
            mag = z.abs()
            kth = mag.topk(count, dim=-1).values[..., -1:]
            keep = (mag >= kth) & (mag > t)
        return torch.where(keep, z, shrunk)

    def alista_weight(self) -> torch.Tensor:
        """ALISTA's analytic weight W (M, N) (Liu et al. 2019): for each column the solution of
        min_w ||A^T w||^2 s.t. w^T a_i = 1, i.e. W = G^-1 A diag(a_i^T G^-1 a_i)^-1 with G = A A^T
        (float64 solve, cached). W^T A has a unit diagonal and the smallest off-diagonal
        Frobenius norm that allows (the surrogate of the coherence the ALISTA bound is stated in)."""
        if getattr(self, "_alista", None) is None:
            A = self.A.double()
            G = A @ A.T
            if torch.linalg.matrix_rank(G) < self.m:
                raise ConfigError(f"lasso: the analytic ALISTA weight needs rank(A) = m = {self.m} (m <= n)")
            GA = torch.linalg.solve(G, A)
            self._alista = (GA / (A * GA).sum(0, keepdim=True)).float()
        return self._alista

    def oracle(self, inst: SparseBatch) -> torch.Tensor:
        """The oracle-support bound: least squares of y on the columns of the true support (B, N)
        (float64). Needs ``x_true``; no LASSO solver can beat it on average."""
        if inst.x_true is None:
            raise InputError("the oracle-support estimate needs instances with x_true")
        A = self._A(inst.y).double()
        mask = (inst.x_true != 0).double()                                   # (B, N)
        As = A.unsqueeze(0) * mask.unsqueeze(1)                               # (B, M, N) off-support columns zeroed
        eye = torch.diag_embed(1.0 - mask)                                    # keeps the normal matrix invertible
        x = torch.linalg.solve(As.transpose(1, 2) @ As + eye, (As.transpose(1, 2) @ inst.y.double().unsqueeze(-1)))
        return (x.squeeze(-1) * mask).float()

    def threshold(self, step):
        """The ISTA threshold for an (effective) step: step * lam."""
        return step * self.lam

    def feasible(self, x, inst, rtol: float = 0.0):
        return torch.isfinite(x).all(-1)

    def init(self, inst, method=None, seed=0):
        return torch.zeros(inst.batch_size, self.n, device=inst.y.device)

    def ground_truth(self, inst):
        return inst.x_true

    def loss_scale(self, inst):
        """The objective at x = 0, 1/2 ||y||^2, (B,)."""
        return 0.5 * inst.y.square().sum(-1).clamp_min(1e-12)

    def supervised_target(self, inst):
        """The true sparse signal (LISTA is trained against ground truth)."""
        if inst.x_true is None:
            raise InputError("supervised training needs instances with x_true")
        return inst.x_true

    def supervised_loss(self, x, inst, x_ref):
        return (x - x_ref).square().sum(-1) / x_ref.square().sum(-1).clamp_min(1e-12)

    def summarize(self, x, inst, x_ref) -> dict:
        """nmse_db against ``x_ref`` (the true signal where known, see ``ground_truth``), mean objective."""
        err = float((x - x_ref).double().square().sum())
        norm = float(x_ref.double().square().sum())
        return {"nmse_db": 10.0 * math.log10(max(err, 1e-30) / max(norm, 1e-30)),
                "objective_mean": float(self.objective(x, inst).double().mean()),
                "feasible": bool(self.feasible(x, inst).all())}
