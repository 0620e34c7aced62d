"""ADMM (alternating direction method of multipliers) and the splittings it runs on: the LASSO and
box-relaxed MIMO detection. The same ``ADMM.step`` is the classical solver (fixed penalty) and the
layer of ADMM-Net (per-layer learned penalty, relaxation, threshold / projection).

ADMM solves min f(x) + g(z) subject to x = z in its scaled form, one iteration (Boyd et al. 2011,
section 3.1.1, with over-relaxation alpha, section 3.4.3):

    x  <- argmin_x f(x) + rho/2 ||x - (z - u)||^2          the "x-update", a regularised least squares
    x^ <- alpha x + (1 - alpha) z                          over-relaxation (alpha = 1: plain ADMM)
    z  <- prox_{g / rho}(x^ + u)                            the "z-update"
    u  <- u + x^ - z                                        the scaled dual variable

The problem supplies f and g through a *splitting* (``SPLITTINGS`` by problem name, or a problem's own
``admm_splitting()``): the x-update, the z-update and how the pair (x, z) reads out as the problem's
iterate.

**LASSO** (``problems.lasso``): f = 1/2 ||y - A x||^2, g = lam ||z||_1. The penalty is stated relative to
the Lipschitz constant L = ||A||_2^2 (rho_eff = rho L, so rho = 1 is a sensible start for any A); the
x-update is (A^T A + rho_eff I)^-1 (A^T y + rho_eff (z - u)) through the eigendecomposition of the
fixed A^T A (computed once per problem), the z-update soft thresholding at lam / rho_eff, or at a
learned threshold theta_k (ADMM-Net). The iterate is z (sparse).

**Detection** (``problems.detection``): f = ||y - H s||^2 / (2 s2) over complex s, g the indicator of
the box [-a, a] + j [-a, a] that holds the constellation (a = its largest real coordinate): the
box-relaxed ("infinity-norm") detector of Shahabuddin, Juntti and Studer (ADMIN, 2017). The penalty
is relative to the noise: the x-update is (H^H H + rho s2 I)^-1 (H^H y + rho s2 (z - u)), so from
z = u = 0 and rho = 1 the first x is the LMMSE estimate of unit-energy symbols. It runs through the
eigendecomposition of H^H H, once per instance (``_gram_eigen``). The iterate is
the log-probabilities -|x_u - c|^2 / (tau nu_u) with nu_u = s2 [(H^H H + rho s2 I)^-1]_uu (the
estimate's noise variance for a unit prior) and a calibration tau (1 classical): the hard decision
is the constellation point nearest to x, whatever tau. ADMM-Net's z-update may also move towards the
constellation itself: z = P_box(v) + gamma_k (E_t[c | v] - P_box(v)), the soft projection
E_t[c | v] = sum_c c softmax(-|v - c|^2 / t_k) (gamma_k = 0 at the start: the box projection).

Per-iteration parameters (each a scalar or (B,); absent: the classical value): ``penalty`` rho
(required), ``relaxation`` alpha (1), ``threshold`` theta (LASSO, lam / rho_eff), ``temperature`` tau
(detection, 1), ``projection_mix`` gamma and ``projection_temperature`` t (detection, 0 / unused).
On detection the output is read from x, before the z- and dual updates: the last iteration's alpha,
gamma and t reach nothing (as the classical detector's last z-update is unused), and an unfolded
network's last-layer values of them stay at their start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import batch_scalar
from .solver import solve


@dataclass
class ADMMState:
    """x: the problem's iterate (what ``solve`` and the unfolded network return); z, u: ADMM's split
    variable and scaled dual (shape of the splitting's variable); x_prev: the previous iterate."""

    x: torch.Tensor
    x_prev: torch.Tensor
    z: Optional[torch.Tensor] = None
    u: Optional[torch.Tensor] = None


class LassoSplitting:
    """f = 1/2 ||y - A x||^2, g = lam ||z||_1 (module docstring); variables (B, N) float32."""

    def __init__(self, problem):
        self.problem = problem
        cache = problem.__dict__.get("_admm_eigen")
        if cache is None or cache[0] is not problem.A:            # computed once per A, kept in float64
            A = problem.A.double()
            s, V = torch.linalg.eigh(A.T @ A)
            cache = (problem.A, s.clamp_min(0.0), V)
            problem.__dict__["_admm_eigen"] = cache
        self.s, self.V = cache[1:]

    def start(self, inst, x0):
        return torch.zeros_like(x0), torch.zeros_like(x0)

    def rho(self, penalty, inst, like):
        """rho_eff = rho L, broadcast against the variable ``like``."""
        return batch_scalar(penalty, like) * self.problem.lipschitz

    def x_update(self, inst, v, rho):
        """(A^T A + rho I)^-1 (A^T y + rho v) and no side information."""
        s, V = self.s.to(v), self.V.to(v)
        rhs = inst.y.to(v) @ self.problem.A.to(v) + rho * v                        # A^T y + rho v, (B, N)
        return ((rhs @ V) / (s + rho)) @ V.T, None

    def z_update(self, w, inst, rho, params):
        theta = params.get("threshold")
        if theta is None:
            theta = self.problem.lam / rho
        return self.problem.prox(w, inst, theta)

    def readout(self, x, aux, z, inst, params):
        return z


def _gram_eigen(inst):
    """The eigendecomposition of H^H H (eigenvalues (B, U) float32 >= 0, vectors Q (B, U, U)) and
    H^H y (B, U), computed once per instance and kept on it: every layer of an ADMM call needs them
    and none depends on a learned parameter (H and y are data, no gradient flows into them)."""
    cache = inst.__dict__.get("_gram_eigen")
    if cache is None or cache[0] is not inst.H:
        with torch.no_grad():
            lam, Q = torch.linalg.eigh(inst.H.mH @ inst.H)
            hy = (inst.H.mH @ inst.y.unsqueeze(-1)).squeeze(-1)
        cache = (inst.H, lam.clamp_min(0.0), Q, hy)
        inst.__dict__["_gram_eigen"] = cache
    return cache[1:]


class BoxDetectionSplitting:
    """f = ||y - H s||^2 / (2 s2), g = the indicator of the constellation's box (module docstring);
    variables (B, U) complex64."""

    def __init__(self, problem):
        self.problem = problem
        pts = problem.constellation
        self.a = float(pts.real.abs().max())

    def start(self, inst, x0):
        z = torch.zeros(x0.shape[:-1], dtype=inst.y.dtype, device=x0.device)
        return z, torch.zeros_like(z)

    def rho(self, penalty, inst, like):
        """rho s2, (B, 1) real (the penalty is relative to each sample's noise variance)."""
        return (batch_scalar(penalty, like.real) * inst.noise_var.unsqueeze(-1)).reshape(-1, 1)

    def x_update(self, inst, v, rho):
        """(H^H H + rho s2 I)^-1 (H^H y + rho s2 v) and the diagonal of that inverse (B, U)."""
        lam, Q, hy = _gram_eigen(inst)
        inv = 1.0 / (lam + rho)                                                   # (B, U)
        rhs = hy + rho.to(v.dtype) * v
        diag = ((Q.real.square() + Q.imag.square()) @ inv.unsqueeze(-1)).squeeze(-1)
        return (Q @ (inv.to(Q.dtype).unsqueeze(-1) * (Q.mH @ rhs.unsqueeze(-1)))).squeeze(-1), diag

    def z_update(self, w, inst, rho, params):
        a = self.a
        box = torch.complex(w.real.clamp(-a, a), w.imag.clamp(-a, a))
        gamma = params.get("projection_mix")
        if gamma is None:
            return box
        t = batch_scalar(params.get("projection_temperature", 0.1), w.real).unsqueeze(-1)
        pts = self.problem.points(w)
        weights = torch.softmax(-(w.unsqueeze(-1) - pts).abs().square() / t, -1)
        soft = (weights.to(pts.dtype) * pts).sum(-1)
        return box + batch_scalar(gamma, w.real).to(w.dtype) * (soft - box)

    def readout(self, x, diag, z, inst, params):
        s2 = inst.noise_var.unsqueeze(-1)
        nu = (s2 * diag).clamp_min(1e-9) * batch_scalar(params.get("temperature", 1.0), x.real)
        d = (x.unsqueeze(-1) - self.problem.points(x)).abs().square()
        return torch.log_softmax(-d / nu.unsqueeze(-1), -1)


SPLITTINGS = {"lasso": LassoSplitting, "detection": BoxDetectionSplitting}
"""Problem name -> its ADMM splitting (a problem may instead define ``admm_splitting()``)."""


def splitting(problem):
    """The ADMM splitting of ``problem`` (its own ``admm_splitting()``, else ``SPLITTINGS``)."""
    own = getattr(problem, "admm_splitting", None)
    if own is not None:
        return own()
    if problem.name not in SPLITTINGS:
        raise ConfigError(f"ADMM has no splitting for problem {problem.name!r}; it runs on {', '.join(SPLITTINGS)}")
    return SPLITTINGS[problem.name](problem)


@ALGORITHMS.register
class ADMM:
    """Scaled-form ADMM with over-relaxation (module docstring). The splitting is built per step (cheap:
    the LASSO's eigendecomposition is kept on the problem, detection's on the instance)."""

    name = "admm"
    parameters = ("penalty", "relaxation", "threshold", "temperature", "projection_mix", "projection_temperature")
    problems = tuple(SPLITTINGS)

    def __init__(self):
        self.normalize, self.extrapolation = None, "none"

    @classmethod
    def from_model_config(cls, cfg, problem) -> "ADMM":
        return cls()

    @classmethod
    def for_reference(cls, decl) -> "ADMM":
        return cls()

    def init_state(self, x0: torch.Tensor) -> ADMMState:
        return ADMMState(x0, x0)

    def step(self, problem, inst, state: ADMMState, params: dict) -> ADMMState:
        sp = splitting(problem)
        if state.z is None:                                   # the first step: z = u = 0
            state = ADMMState(state.x, state.x_prev, *sp.start(inst, state.x))
        z, u = state.z, state.u
        rho = sp.rho(params["penalty"], inst, z)
        x, aux = sp.x_update(inst, z - u, rho)
        alpha = params.get("relaxation")
        if alpha is not None:
            a = batch_scalar(alpha, x.real).to(x.dtype)
            x_hat = a * x + (1 - a) * z
        else:
            x_hat = x
        z_new = sp.z_update(x_hat + u, inst, rho, params)
        u_new = u + x_hat - z_new
        return ADMMState(sp.readout(x, aux, z_new, inst, params), state.x, z_new, u_new)


# ---- classical ADMM ---------------------------------------------------------------------------
PENALTIES = tuple(float(v) for v in torch.logspace(-2, 2, 17).tolist())
"""The penalty grid (rho, relative to L for the LASSO, to the noise variance for detection) the tuned
classical ADMM is chosen on."""
RELAXATIONS = (1.0, 1.5, 1.8)
"""Over-relaxations the tuned classical ADMM may also pick (1: plain ADMM; 1.5-1.8 the usual advice)."""


def admm(problem, inst, iterations: int, penalty: float = 1.0, relaxation: float = 1.0) -> torch.Tensor:
    """``iterations`` of classical ADMM with a fixed penalty and over-relaxation from z = u = 0; the
    problem's iterate (LASSO: x (B, N); detection: log-probabilities (B, U, C))."""
    p = {"penalty": penalty, "relaxation": None if relaxation == 1.0 else relaxation}
    return solve(problem, inst, ADMM(), p, iterations).x


def admm_score(problem, x, inst) -> Tuple[float, float]:
    """What the tuning minimises: detection (SER, cross-entropy); LASSO (NMSE dB against the truth, 0)."""
    if problem.name == "detection":
        return (problem.summarize(x, inst, inst.s)["ser"], problem.supervised_loss(x, inst, inst.s).mean().item())
    return (problem.summarize(x, inst, problem.ground_truth(inst))["nmse_db"], 0.0)


def tune_admm(problem, inst, iterations: int, penalties: Iterable[float] = PENALTIES,
              relaxations: Iterable[float] = RELAXATIONS) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """The (penalty, relaxation) of ``iterations`` classical ADMM iterations that scores best on ``inst``
    (a validation draw with the truth), by exhaustive sweep. Returns (params, score)."""
    best = None
    for rho in penalties:
        for alpha in relaxations:
            x = admm(problem, inst, iterations, rho, alpha)
            if not torch.isfinite(x).all():
                continue
            score = admm_score(problem, x, inst)
            if best is None or score < best[1]:
                best = ((rho, alpha), score)
    if best is None:
        raise ConfigError("tune_admm: no penalty of the grid gives a finite result")
    return best


__all__ = ["ADMM", "ADMMState", "SPLITTINGS", "splitting", "admm", "tune_admm", "admm_score", "PENALTIES",
           "RELAXATIONS", "LassoSplitting", "BoxDetectionSplitting"]
