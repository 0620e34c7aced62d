"""WMMSE (Shi, Razaviyayn, Luo, He 2011) for the weighted sum rate of single-antenna users, in the
row space of the channel: the update rule of the classical solver and of unfolded WMMSE (UWMMSE).

Every WMMSE precoder has the form V = H^H X with X a K x K matrix (the transmit update below), so
an iteration needs the K x K Gram matrix G = H H^H, one K x K Hermitian eigendecomposition and a
scalar monotone Newton solve for the exact power multiplier, instead of the textbook n_tx x n_tx inverse
inside a bisection. ``wmmse_textbook`` is that textbook form, kept for tests.

One iteration from V (columns v_k, user k receives h_k^H v_k; row k of H is h_k^H):

    T_k = sum_j |h_k^H v_j|^2 + s2            u_k = h_k^H v_k / T_k          (MMSE receiver)
    w_k = T_k / (T_k - |h_k^H v_k|^2)          (= 1 + SINR_k, the MSE weight)
    w_k <- correction(w_k)                     (unfolded only: a_k w_k + b_k, and a learned net)
    V'  = (H^H D H + mu I)^{-1} H^H diag(c),   d_k = alpha_k w_k |u_k|^2,  c_k = alpha_k w_k u_k,
          mu >= 0 the smallest value with ||V'||_F^2 <= P
    V   <- proj_P(V + omega (V' - V))          (omega = 1: classical WMMSE)

Row-space form: with M = D^{1/2} G D^{1/2} = U diag(lam) U^H and e_k = c_k / sqrt(d_k),
X = D^{1/2} U diag(1 / (lam + mu)) U^H diag(e) and ||V'||^2 = sum_i lam_i phi_i / (lam_i + mu)^2,
phi_i = sum_k |U_ki|^2 |e_k|^2: decreasing in mu, solved by Newton on its inverse square root
(``power_multiplier``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import abs2, frob2
from ..problems.mu_miso import interference
from .proximal_gradient import State

TINY = 1e-30


def _scalar(value, like: torch.Tensor) -> torch.Tensor:
    """A python scalar, 0-d tensor or (B,) tensor shaped to broadcast against (B, K)."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return t.view(-1, 1) if t.dim() == 1 else t


def power_multiplier(lam: torch.Tensor, phi: torch.Tensor, power: float, iterations: int = 8) -> torch.Tensor:
    """The smallest mu >= 0 with p(mu) = sum_i lam_i phi_i / (lam_i + mu)^2 <= power, (B,) float64.

    Args:
        lam: (B, K) eigenvalues >= 0; phi: (B, K) weights >= 0; power: P > 0.
    Newton on h(mu) = p(mu)^{-1/2}, which is concave and increasing (the trust-region secular
    equation of More and Sorensen), from the lower bound max_i (sqrt(lam_i phi_i / P) - lam_i): each
    term alone must fit, so the root is not below it. From the left of the root, a Newton step on a
    concave function never overshoots, so the iterates increase monotonically to the root (exact in
    one step when one eigenvalue carries the power); ``iterations`` steps, clamped to the bracket
    [lower bound, sqrt(sum lam phi / P)].
    """
    lam, phi = lam.double().clamp_min(0.0), phi.double().clamp_min(0.0)
    num = lam * phi
    free = (num / lam.square().clamp_min(TINY)).sum(-1) <= power      # mu = 0 fits (full-rank case)
    lo = ((num / power).sqrt() - lam).clamp_min(0.0).amax(-1)
    hi = (num.sum(-1) / power).sqrt()
    mu = lo
    target = power ** -0.5
    for _ in range(iterations):
        d = (lam + mu.unsqueeze(-1)).clamp_min(TINY)
        p = (num / d.square()).sum(-1).clamp_min(TINY)
        dp = -2.0 * (num / d.pow(3)).sum(-1)
        h, dh = p.rsqrt(), -0.5 * p.pow(-1.5) * dp                    # dh > 0
        mu = torch.minimum(torch.maximum(mu - (h - target) / dh.clamp_min(TINY), lo), hi)
    return torch.where(free, torch.zeros_like(mu), mu)


def receivers(H: torch.Tensor, V: torch.Tensor, noise_var: torch.Tensor):
    """MMSE receivers and MSE weights of precoder V.

    Args: H (B, K, n_tx) complex, V (B, n_tx, K) complex, noise_var (B,) float.
    Returns: u (B, K) complex, w (B, K) float (= 1 + SINR_k).
    """
    Z, T, I = interference(H, V, noise_var)
    return torch.diagonal(Z, dim1=-2, dim2=-1) / T, T / I


def transmit(H: torch.Tensor, alpha_w: torch.Tensor, u: torch.Tensor, power: float,
             newton_iterations: int = 8) -> torch.Tensor:
    """The WMMSE transmit update in the row space: V' = H^H X, (B, n_tx, K) complex.

    Args: H (B, K, n_tx) complex; alpha_w (B, K) float > 0 (user weight x MSE weight);
    u (B, K) complex receivers; power P.

    The multiplier mu comes from the eigendecomposition of M without gradient. Without autograd X is
    formed from the same eigenvectors; when gradients are needed (training an unfolded network) X
    is formed by a linear solve with (M + mu I) and V' rescaled to the power it must have, because
    the backward of a complex eigendecomposition is undefined for a loss that does not fix the
    eigenvectors' phases numerically. Both give the same V' (the tests check it).
    """
    d = (alpha_w * abs2(u)).clamp_min(TINY)
    sd = d.sqrt()
    G = H @ H.mH                                                       # (B, K, K)
    M = sd.unsqueeze(-1) * G * sd.unsqueeze(-2)
    e = alpha_w.sqrt() * torch.sgn(u)                                   # c_k / sqrt(d_k)
    with torch.no_grad():
        lam, U = torch.linalg.eigh(M.detach())
        lam = lam.clamp_min(0.0)
        phi = (abs2(U) * abs2(e.detach()).unsqueeze(-1)).sum(-2)   # sum_k |U_ki|^2 |e_k|^2
        mu = power_multiplier(lam, phi, power, newton_iterations).to(lam.dtype)
    if torch.is_grad_enabled() and (M.requires_grad or e.requires_grad):
        # (M + mu I) is singular only where mu = 0 and M is rank deficient (K > n_tx): a load of 1e-7
        # of the mean eigenvalue then gives the minimum-norm (pseudo-inverse) solution
        load = torch.where(mu > 0, mu, 1e-7 * lam.mean(-1).clamp_min(TINY))
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        X = sd.unsqueeze(-1).to(M.dtype) * torch.linalg.solve(M + load.view(-1, 1, 1).to(M.dtype) * eye,
                                                               torch.diag_embed(e))
        V = H.mH @ X
        norm2 = frob2(V).view(-1, 1, 1)
        scale = torch.where((mu > 0).view(-1, 1, 1), (power / norm2.clamp_min(TINY)).sqrt(), torch.ones_like(norm2))
        return V * scale
    denom = lam + mu.unsqueeze(-1)
    inv = torch.where(denom > 1e-9 * lam.amax(-1, keepdim=True).clamp_min(TINY), 1.0 / denom.clamp_min(TINY),
                      torch.zeros_like(denom))                         # pseudo-inverse on a null space
    Q = (U * inv.unsqueeze(-2).to(U.dtype)) @ U.mH
    X = sd.unsqueeze(-1).to(Q.dtype) * Q * e.unsqueeze(-2)
    return H.mH @ X


def project_power(V: torch.Tensor, power: float) -> torch.Tensor:
    """Scale V down onto ||V||_F^2 <= P (unchanged inside)."""
    norm = frob2(V).sqrt().view(-1, 1, 1)
    return V * torch.clamp(math.sqrt(power) / norm.clamp_min(TINY), max=1.0)


def correct_weights(w: torch.Tensor, params: dict, H: torch.Tensor, noise_var: torch.Tensor, power: float):
    """UWMMSE's learned correction of the MSE weights (identity when no parameter is given).

    w <- a w + b (per-layer scalars ``weight_scale`` a > 0, ``weight_shift`` b), then, with a
    ``correction`` network, w <- w exp(o_0) + o_1 where o = MLP(features) per user. The features of
    user k are log w_k, log(1 + ||h_k||^2 P / s2) / 10 and the mean of log w over the users, so the
    network is permutation-equivariant and has no size of its own: one model serves any K and n_tx.
    The result is kept >= 1e-3 (a weight is positive)."""
    a, b, net = params.get("weight_scale"), params.get("weight_shift"), params.get("correction")
    if a is not None:
        w = _scalar(a, w) * w
    if b is not None:
        w = w + _scalar(b, w)
    if net:
        logw = w.clamp_min(1e-3).log()
        snr = torch.log1p(abs2(H).sum(-1) * power / noise_var.unsqueeze(-1)) / 10.0
        feats = torch.stack([logw, snr, logw.mean(-1, keepdim=True).expand_as(logw)], -1)   # (B, K, 3)
        hidden = torch.tanh(feats @ net["w1"] + net["b1"])
        out = hidden @ net["w2"] + net["b2"]                                                # (B, K, 2)
        w = w * out[..., 0].exp() + out[..., 1]
    return w.clamp_min(1e-3)


@ALGORITHMS.register
class WMMSE:
    """The WMMSE iteration (module docstring) as an update rule.

    Per-iteration parameters (each a scalar or a (B,) tensor; all optional):
        relaxation (omega, default 1), weight_scale (a), weight_shift (b), correction (the learned
        network's matrices w1 (3, h), b1 (h,), w2 (h, 2), b2 (2,)).

    The problem supplies ``power`` and ``user_weights(inst) -> (B, K) or (1, K)``; instances carry
    H (B, K, n_tx) complex64 and noise_var (B,) float32.
    """

    name = "wmmse"
    parameters = ("relaxation", "weight_scale", "weight_shift", "correction")
    per_sample = True                               # relaxation, weight_scale, weight_shift may be (B,)
    problems = ("mu_miso",)
    normalize: Optional[str] = None                 # no gradient scaling: the update is not a gradient step

    def __init__(self, newton_iterations: int = 8):
        if not isinstance(newton_iterations, int) or newton_iterations < 1:
            raise ConfigError(f"wmmse: newton_iterations must be an integer >= 1 (got {newton_iterations!r})")
        self.newton_iterations = newton_iterations

    @classmethod
    def from_model_config(cls, cfg, problem) -> "WMMSE":
        return cls()

    @classmethod
    def for_reference(cls, decl) -> "WMMSE":
        return cls()

    def init_state(self, x0: torch.Tensor) -> State:
        return State(x0, x0)

    def step(self, problem, inst, state: State, params: dict) -> State:
        V = state.x
        u, w = receivers(inst.H, V, inst.noise_var)
        w = correct_weights(w, params, inst.H, inst.noise_var, problem.power)
        target = transmit(inst.H, problem.user_weights(inst) * w, u, problem.power, self.newton_iterations)
        omega = params.get("relaxation")
        if omega is not None and not (isinstance(omega, (int, float)) and omega == 1):
            target = V + _scalar(omega, V.real.new_zeros(V.shape[0], 1)).unsqueeze(-1) * (target - V)
        return State(project_power(target, problem.power), V)


def wmmse_textbook(H: torch.Tensor, V: torch.Tensor, noise_var: torch.Tensor, alpha: torch.Tensor, power: float,
                   bisection: int = 200) -> torch.Tensor:
    """One WMMSE iteration in the textbook form (n_tx x n_tx inverse, bisection on mu), complex128.
    For tests of the row-space form on small cases; (B, K, n_tx), (B, n_tx, K), (B,), (B or 1, K)."""
    H, V = H.to(torch.complex128), V.to(torch.complex128)
    u, w = receivers(H, V, noise_var.double())
    aw = (alpha.double() * w).to(torch.complex128)
    A = H.mH @ ((aw * u.abs().square()).unsqueeze(-1) * H)            # sum_k a_k w_k |u_k|^2 h_k h_k^H
    Bm = H.mH * (aw * u).unsqueeze(-2)                                 # columns a_k w_k u_k h_k
    eye = torch.eye(H.shape[-1], dtype=H.dtype)

    def solve(mu):
        return torch.linalg.solve(A + mu.view(-1, 1, 1) * eye, Bm)

    def pw(mu):
        return solve(mu).abs().square().sum((-2, -1))

    lo = torch.zeros(H.shape[0], dtype=torch.float64)
    tiny = 1e-10 * torch.diagonal(A, dim1=-2, dim2=-1).real.mean(-1)   # mu -> 0+: the pseudo-inverse solution
    fits = pw(tiny) <= power
    hi = torch.ones_like(lo)
    while (pw(hi) > power).any():
        hi = torch.where(pw(hi) > power, hi * 2, hi)
    for _ in range(bisection):
        mid = 0.5 * (lo + hi)
        big = pw(mid) > power
        lo, hi = torch.where(big, mid, lo), torch.where(big, hi, mid)
    return solve(torch.where(fits, tiny, hi))
