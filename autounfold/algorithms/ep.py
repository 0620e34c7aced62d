"""Expectation propagation (EP) MIMO detection (Cespedes, Olmos, Sanchez-Fernandez and Santamaria-
Caballero 2014), the classical detector and the layer of learned EP.

EP approximates the posterior of the real-valued symbol vector x (the 2U real and imaginary parts,
each from a PAM alphabet) by a Gaussian whose prior factors are Gaussians N(gam_i / lam_i, 1 / lam_i)
fitted to the discrete alphabet. One iteration, on the whitened real model y = H x + n with
E[n n^T] = no I (no = 1/2):

    Sigma = no (H^T H + no diag(lam))^-1,   mu = (H^T H + no diag(lam))^-1 (H^T y + no gam)    the Gaussian posterior
    v_obs = 1 / (1 / Sigma_ii - lam_i),     x_obs = v_obs (mu_i / Sigma_ii - gam_i)              its cavity ("observation")
    p_i(c) ∝ exp(-(x_obs,i - c)^2 / (2 v_obs,i))                                                 the discrete posterior
    x_i = E_p[c],  v_i = Var_p[c]                                                                 moment matching
    lam_new = 1 / v - 1 / v_obs,  gam_new = x / v - x_obs / v_obs                                 (kept at the old value where lam_new < 0)
    lam <- (1 - beta) lam_new + beta lam,  gam <- (1 - beta) gam_new + beta gam                   damping beta

with the variances clamped below at a floor (1e-6). The start is gam = 0, lam = 1 / Es. Everything above
follows Sionna's ``sionna.phy.mimo.EPDetector`` (its defaults: beta = 0.9, floor 1e-6, and Es the
*unbiased* sample variance of the PAM points, e.g. 1.0 for QPSK's +-1/sqrt 2), so our classical EP and
Sionna's give the same symbol logits on the same inputs (tested). The symbol log-probabilities over the
problem's QAM constellation are the sums of the two PAM logits of each point, normalised.

Learned EP (``learned_ep`` layer) keeps the update and learns per iteration the damping beta_k (through
its logit), a scale s_k of the cavity variance v_obs (1 classical: EP's cavity is overconfident on
finite, correlated channels), the variance floor f_k (1e-6 classical) and a temperature tau_k of the
symbol log-probabilities it outputs (1 classical; it calibrates the output the cross-entropy is
measured on without changing the iteration, so the training loss need not bend s_k to calibrate).
``learned_ep_prior`` also learns one scale c of the start's prior variance, lam = 1 / (c Es) (1
classical): the initial variance that Chen, Yao and Hu's modified EP ("MEPNet", 2020) learn beside the
damping. It changes the first iteration's LMMSE-like estimate and so every later one.

Per-iteration parameters (each a scalar or (B,); absent: Sionna's value): ``damping`` beta or
``damping_logit``, ``obs_scale`` s, ``variance_floor`` f, ``temperature`` tau, ``prior_scale`` c (read
on the first iteration only). The output of an
iteration is read from its cavity, before the damped update of lam and gam (as Sionna's): the last
iteration's beta reaches nothing, and an unfolded network's last-layer damping stays at its start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import batch_scalar
from .solver import solve

DAMPING = 0.9
"""Sionna's default beta (the weight of the old lam, gam)."""
FLOOR = 1e-6
"""Sionna's variance floor in single precision."""
FLOOR_DOUBLE = 1e-12
"""Sionna's variance floor in double precision (float64 inputs)."""


def pam_alphabet(problem) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PAM alphabet of the real parts (P,) float64 (ascending; the imaginary parts use the same) and,
    per QAM point, the index of its real and imaginary part in it ((C,) int64 each)."""
    pts = problem.constellation
    levels = torch.unique(pts.real)                 # the QAM is built from integer PAM levels
    if levels.numel() ** 2 != pts.numel():
        raise ConfigError(f"EP needs a square QAM constellation (got {pts.numel()} points, {levels.numel()} real levels)")
    step = levels[levels > 0].min()
    ints = torch.round(levels / step).double()                           # the odd integers -(P-1) .. P-1
    pam = ints * torch.sqrt(0.5 / ints.square().mean())                 # exact in float64: energy 1/2 per real part
    re = (pts.real.unsqueeze(-1) - levels).abs().argmin(-1)
    im = (pts.imag.unsqueeze(-1) - levels).abs().argmin(-1)
    return pam, re, im


def _alphabet(problem, like: torch.Tensor):
    """``pam_alphabet`` on ``like``'s device, the PAM levels in its dtype: computed once per problem and
    kept (every iteration of every call needs it; it depends on the constellation only)."""
    cache = problem.__dict__.setdefault("_ep_alphabet", {})
    key = (problem.constellation.data_ptr(), like.device, like.dtype)
    if key not in cache:
        pam, re, im = pam_alphabet(problem)
        cache[key] = (pam.to(device=like.device, dtype=like.dtype), re.to(like.device), im.to(like.device))
    return cache[key]


@dataclass
class EPState:
    """x: log-probabilities (B, U, C); lam, gam: the prior factors (B, 2U); gram (B, 2U, 2U) and hty
    (B, 2U): H^T H and H^T y of the whitened real model (computed on the first step)."""

    x: torch.Tensor
    x_prev: torch.Tensor
    lam: Optional[torch.Tensor] = None
    gam: Optional[torch.Tensor] = None
    gram: Optional[torch.Tensor] = None
    hty: Optional[torch.Tensor] = None


def real_model(inst) -> Tuple[torch.Tensor, torch.Tensor]:
    """H^T H (B, 2U, 2U) and H^T y (B, 2U) of the whitened real-valued model: y / s, H / s split into
    [[Re H, -Im H], [Im H, Re H]] and [Re y; Im y] (Sionna's whiten_channel then complex2real_channel)."""
    s = inst.noise_var.sqrt().view(-1, 1, 1)
    H = inst.H / s
    y = inst.y / s.squeeze(-1)
    Hr = torch.cat([torch.cat([H.real, -H.imag], -1), torch.cat([H.imag, H.real], -1)], -2)      # (B, 2N, 2U)
    yr = torch.cat([y.real, y.imag], -1)
    return Hr.mT @ Hr, (Hr.mT @ yr.unsqueeze(-1)).squeeze(-1)


@ALGORITHMS.register
class ExpectationPropagation:
    """EP detection (module docstring); the iterate is the symbol log-probabilities (B, U, C)."""

    name = "ep"
    parameters = ("damping", "damping_logit", "obs_scale", "variance_floor", "temperature", "prior_scale")
    problems = ("detection",)
    no = 0.5

    def __init__(self):
        self.normalize, self.extrapolation = None, "none"

    @classmethod
    def from_model_config(cls, cfg, problem) -> "ExpectationPropagation":
        return cls()

    @classmethod
    def for_reference(cls, decl) -> "ExpectationPropagation":
        return cls()

    def init_state(self, x0: torch.Tensor) -> EPState:
        return EPState(x0, x0)

    def step(self, problem, inst, state: EPState, params: dict) -> EPState:
        pam, re, im = _alphabet(problem, inst.noise_var)
        if state.lam is None:                                       # the first step: gam = 0, lam = 1 / (c Es)
            gram, hty = real_model(inst)
            es = pam.var()                                          # unbiased, as Sionna
            lam = torch.full_like(hty, 1.0) / es
            if params.get("prior_scale") is not None:
                lam = lam / batch_scalar(params["prior_scale"], lam)
            state = EPState(state.x, state.x_prev, lam, torch.zeros_like(hty), gram, hty)
        lam, gam, no = state.lam, state.gam, self.no
        floor = params.get("variance_floor")
        floor = (FLOOR if lam.dtype != torch.float64 else FLOOR_DOUBLE) if floor is None else batch_scalar(floor, lam)
        # the Gaussian posterior and its cavity
        A = state.gram + no * torch.diag_embed(lam)
        inv, _ = torch.linalg.inv_ex(A)
        mu = (inv @ (state.hty + no * gam).unsqueeze(-1)).squeeze(-1)
        sigma = no * inv.diagonal(dim1=-2, dim2=-1)
        v_obs = torch.clamp(1.0 / (1.0 / sigma - lam), min=floor)
        x_obs = v_obs * (mu / sigma - gam)
        scale = params.get("obs_scale")
        if scale is not None:
            v_obs = v_obs * batch_scalar(scale, v_obs)
        # the discrete posterior per real dimension and its moments
        logits = -(x_obs.unsqueeze(-1) - pam).square() / (2.0 * v_obs.unsqueeze(-1))            # (B, 2U, P)
        pmf = torch.softmax(logits, -1)
        x = (pmf * pam).sum(-1)
        v = torch.clamp((pmf * (pam - x.unsqueeze(-1)).square()).sum(-1), min=floor)
        lam_new, gam_new = 1.0 / v - 1.0 / v_obs, x / v - x_obs / v_obs
        keep = lam_new < 0
        lam_new, gam_new = torch.where(keep, lam, lam_new), torch.where(keep, gam, gam_new)
        beta = params.get("damping")
        if params.get("damping_logit") is not None:
            beta = torch.sigmoid(batch_scalar(params["damping_logit"], lam))
        beta = DAMPING if beta is None else batch_scalar(beta, lam)
        lam, gam = (1 - beta) * lam_new + beta * lam, (1 - beta) * gam_new + beta * gam
        U = logits.shape[-2] // 2
        sym = logits[..., :U, :][..., re] + logits[..., U:, :][..., im]                             # (B, U, C)
        if params.get("temperature") is not None:                   # the readout's calibration only
            sym = sym / batch_scalar(params["temperature"], sym)
        return EPState(torch.log_softmax(sym, -1), state.x, lam, gam, state.gram, state.hty)


def expectation_propagation(problem, inst, iterations: int = 10, damping: float = DAMPING) -> torch.Tensor:
    """``iterations`` of classical EP (our implementation of Sionna's, module docstring) with damping
    ``damping``; symbol log-probabilities (B, U, C)."""
    if iterations < 1:
        raise ConfigError(f"EP needs iterations >= 1 (got {iterations})")
    if not 0.0 <= damping < 1.0:
        raise ConfigError(f"EP damping must be in [0, 1) (got {damping})")
    return solve(problem, inst, ExpectationPropagation(), {"damping": damping}, iterations).x


EP_DAMPINGS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The damping grid of the tuned classical EP."""


def tune_ep(problem, inst, iterations: int, dampings: Iterable[float] = EP_DAMPINGS) -> Tuple[float, Tuple[float, float]]:
    """The damping of ``iterations`` EP iterations with the lowest SER on ``inst`` (with symbols), ties
    broken by the cross-entropy. Returns (damping, (ser, ce))."""
    scores = {}
    for b in dampings:
        x = expectation_propagation(problem, inst, iterations, b)
        scores[b] = (problem.summarize(x, inst, inst.s)["ser"], problem.supervised_loss(x, inst, inst.s).mean().item())
    best = min(scores, key=scores.get)
    return best, scores[best]


__all__ = ["ExpectationPropagation", "EPState", "expectation_propagation", "tune_ep", "pam_alphabet", "real_model",
           "DAMPING", "FLOOR", "FLOOR_DOUBLE", "EP_DAMPINGS"]
