"""MIMO detection update rules (``problems.detection``): soft interference cancellation (the
classical iterative detector and the loop DeepSIC unfolds) and DetNet's projected-gradient layer;
plus the classical detectors exhaustive ML and Sionna's K-best and EP (ZF and LMMSE are the
problem's closed forms, ``problems.detection.zf`` / ``lmmse``, re-exported here).

Every detector returns log-probabilities (B, U, C) over ``problem.constellation``.

Soft interference cancellation (SIC, Choi et al. 2000), one parallel iteration from the current
probabilities P (mean m_u, variance v_u of each user's symbol):

    B   = H diag(v) H^H + s2 I,    G = B^-1 H,    t_u = h_u^H B^-1 h_u
    s^_u = m_u + g_u^H (y - H m) / t_u         the unbiased LMMSE estimate of s_u after cancelling
                                               the others' soft symbols (user u's own prior: unit
                                               variance, by Sherman-Morrison on B)
    nu_u = 1 / t_u - v_u                        its effective noise variance
    log P_u(c) = -|s^_u - c|^2 / nu_u + const   (then damped: P <- (1 - beta) P_new + beta P)

From the uniform start (m = 0, v = 1) the first iteration is the per-user LMMSE detector exactly.

SIC treats the residual interference in s^_u as Gaussian. It is not: s^_u - s_u = sum_j L_uj (s_j - m_j)
+ filtered noise, with L_uj = g_u^H h_j / t_u and s_j discrete. The mixture variant (``sic_mix``,
``sic(..., exact_interferers=1)``) keeps the strongest residual interferer j* (largest |L_uj|^2 v_j)
exact and the rest Gaussian:

    log P_u(c) = log sum_c' P_j*(c') exp(-|s^_u - c - L_uj* (c' - m_j*)|^2 / (nu_u - |L_uj*|^2 v_j*)) + const

Its cost over SIC: C times the likelihood's work and one more U x N x U product (G^H H) per iteration.
On the detection benchmark's 4 x 4 QPSK draws it moves SIC-5's SNR at SER 1e-2 from 7.32 to 6.57 dB (ML:
5.73; benchmarks/DETECTION_RESULTS.md). Keeping two interferers exact did worse in a throwaway trial
(6.97 dB against 6.64 for one in the same trial, an earlier version of the interferer choice: with priors
fed back from the previous iteration, more exactness is more overconfidence).

DeepSIC (Shlezinger, Fu and Eldar 2020; the survey's example of the fourth paradigm) replaces each
user's update by a small network with a softmax output, one per user and iteration. Our channels
change per sample, so the network does not see raw y (the paper's setting has a fixed channel):
its inputs are the SIC step's quantities for that user. Output logits = -|s^_u - c|^2 / nu'_u with a
calibrated variance nu'_u = a_u nu_u + f_u (a learned scale and floor per user and iteration), plus
a two-layer MLP of (s^_u, log nu'_u, log of the matched-filter SNR, user u's previous probabilities)
whose last layer starts at zero: the untrained network is SIC. Where the Gaussian model is wrong
(few-bit ADCs, channel estimation error) SIC is overconfident and its errors propagate; the network
can widen and re-shape the likelihood.

DetNet (Samuel, Diskin and Wiesel 2019) unfolds projected gradient descent on ||y - H s||^2: a
gradient step from the soft estimate, a projection onto the constellation, a small network per
layer. The plain step m + delta_k H^H (y - H m) (even scaled per user by 1 / ||h_u||^2) is badly
conditioned on square channels: measured here, the first version of this layer, trained 2000 steps,
never reached SER 1e-2 on 8 x 8 16-QAM. Our layer therefore takes the step along the LMMSE
preconditioner built from the users' current posterior variances V = diag(v), as OAMP does with a
scalar one (Ma and Ping 2017; He, Wen, Jin and Li 2018):

    W = V H^H (H V H^H + s2 I)^-1,   D = diag(W H)
    q = m + delta_k D^-1 W (y - H m) = m + delta_k (s^ - m)    s^, nu: the SIC step's estimate and variance
    e = (1 - delta_k)^2 v + delta_k^2 nu                      the error variance of q

D^-1 W cancels each user's own variance (W_u = v_u g_u^H with g_u = B^-1 h_u, D_uu = v_u t_u; where
v_u = 0, its limit g_u^H / t_u), so delta_k = 1 lands on SIC's unbiased estimate s^, and delta_k < 1
relaxes the current soft estimate towards it (> 1 extrapolates); R = I - delta_k D^-1 W H has
R_uu = 1 - delta_k and R_uj = -delta_k L_uj, which gives e (exact for priors independent of y, as at
the uniform start; inside the iteration an approximation, as SIC's nu is). Then the soft projection
-|q_u - c|^2 / (tau_k e_u) with a learned calibration tau_k, to which a small network per layer,
shared by the users (so any U and n_rx), adds logits; it sees (q_u, log(tau_k e_u), the previous
probabilities, a hidden state h_u of DetNetStep.state_size entries) and returns the next hidden
state. With delta_k = tau_k = 1 and no network the layer is SIC without
damping (``detnet_classical`` equals ``sic``), the equal-depth baseline of the network.

The second version of this layer used one shared prior variance v_bar = mean_u v_u in W (one
eigendecomposition of H^H H per call). It is a worse detector: once most users are confident, v_bar
is small and W turns into zero forcing for the one user still uncertain. On the detection benchmark
of 2026-12-04 its classical form at 10 layers reached SER 1e-2 at 9.19 dB on 4 x 4 QPSK (SIC-5: 7.32)
and 19.35 dB on 8 x 8 16-QAM (SIC-5: 16.13); the trained network 9.19 and 17.23 dB.
"""
from __future__ import annotations

import itertools
from typing import Optional, Tuple

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import batch_scalar
from ..problems.detection import gaussian_logits, lmmse, sic_statistics, zf
from .proximal_gradient import State
from .solver import solve

ML_MAX_CANDIDATES = 65536
"""Exhaustive ML enumerates C^U symbol vectors; beyond this many it refuses (use K-best)."""


def _mlp(net: dict, z: torch.Tensor) -> torch.Tensor:
    """Two layers with a ReLU: z (..., F) -> (..., O); weights w1 (F, h), w2 (h, O)."""
    return torch.relu(z @ net["w1"] + net["b1"]) @ net["w2"] + net["b2"]


def _per_user_mlp(net: dict, z: torch.Tensor) -> torch.Tensor:
    """One network per user: z (B, U, F), w1 (U, F, h), b1 (U, h), w2 (U, h, O), b2 (U, O) -> (B, U, O)."""
    h = torch.relu(torch.einsum("buf,ufh->buh", z, net["w1"]) + net["b1"])
    return torch.einsum("buh,uho->buo", h, net["w2"]) + net["b2"]


def mixture_logits(est, nu, leak, mean, var, logp, points, scale=None, floor=None):
    """SIC's likelihood with the strongest residual interferer kept exact (module docstring).

    Args:
        est, nu: the SIC step's estimates (B, U) complex64 and their variances (B, U).
        leak: L (B, U, U) complex64 from ``sic_statistics(..., leakage=True)``.
        mean, var: the users' soft symbols (B, U) under the current probabilities.
        logp: the current log-probabilities (B, U, C); points: the constellation (C,).
        scale, floor: DeepSIC's calibration of the remaining Gaussian part, a (nu - |L_uj*|^2 v_j*) + f.
    Returns:
        log-probabilities (B, U, C). With one user there is no interferer: the Gaussian likelihood."""
    B, U = est.shape
    C = points.shape[0]
    if U == 1:                                   # no interferer: the Gaussian likelihood
        rest = nu if scale is None else scale * nu + floor
        return gaussian_logits(est, rest, points)
    share = leak.abs().square() * var.unsqueeze(-2)                            # |L_uj|^2 v_j, (B, U, U)
    # never the user itself, also where every other user is certain (all shares 0: any other j* then
    # mixes over a point mass, which is the Gaussian likelihood)
    own = torch.eye(U, dtype=torch.bool, device=est.device)
    j = share.masked_fill(own, -1.0).argmax(-1, keepdim=True)                  # j*(u) != u, (B, U, 1)
    L = leak.gather(-1, j).squeeze(-1)                                         # (B, U)
    rest = (nu - share.gather(-1, j).squeeze(-1)).clamp_min(1e-6)
    if scale is not None:
        rest = scale * rest + floor
    prior = logp.gather(1, j.expand(B, U, C))                                  # log P_j*(c'), (B, U, C')
    shift = L.unsqueeze(-1) * (points - mean.gather(1, j.squeeze(-1)).unsqueeze(-1))   # (B, U, C')
    d = (est.view(B, U, 1, 1) - points.view(1, 1, C, 1) - shift.unsqueeze(-2)).abs().square()   # (B, U, C, C')
    return torch.log_softmax(torch.logsumexp(prior.unsqueeze(-2) - d / rest.view(B, U, 1, 1), -1), -1)


def deepsic_features(est, nu, mf_snr, logp):
    """The network inputs of a DeepSIC block, (B, U, 4 + C): Re s^, Im s^, log nu, log of the
    matched-filter SNR, and the user's previous probabilities (all bounded or logarithmic, so no
    input grows with the SNR)."""
    return torch.cat([torch.stack([est.real, est.imag, nu.log(), mf_snr.clamp_min(1e-6).log()], -1), logp.exp()], -1)


@ALGORITHMS.register
class SoftIC:
    """Parallel soft interference cancellation (module docstring). Per-iteration parameters:
    ``damping`` beta (default 0) or ``damping_logit`` (beta = sigmoid of it), ``noise_inflation``
    (added to the assumed noise variance, default 0), ``noise_relative`` (a further inflation of
    that many times the sample's received power per antenna, ||y||^2 / N, default 0), ``deepsic``
    {noise, noise_relative (the two inflations), scale (U,),
    floor (U,), w1 (U, F, h), b1, w2 (U, h, C), b2} the DeepSIC block."""

    name = "sic"
    parameters = ("damping", "damping_logit", "noise_inflation", "noise_relative", "deepsic", "step")
    problems = ("detection",)
    exact_interferers = 0          # 1: the strongest residual interferer kept exact (SoftICMixture)

    def __init__(self):
        self.normalize, self.extrapolation = None, "none"

    @classmethod
    def from_model_config(cls, cfg, problem) -> "SoftIC":
        return cls()

    @classmethod
    def for_reference(cls, decl) -> "SoftIC":
        return cls()

    def init_state(self, x0: torch.Tensor) -> State:
        return State(x0, x0)

    def step(self, problem, inst, state: State, params: dict) -> State:
        x = state.x
        logp = problem.log_probs(x)
        net = params.get("deepsic")
        inflation, relative = params.get("noise_inflation"), params.get("noise_relative")
        if net is not None:
            inflation, relative = net.get("noise", inflation), net.get("noise_relative", relative)
        if relative is not None:
            # a part proportional to the sample's received power per antenna: the error a gain-controlled
            # few-bit ADC adds scales with it, so one coefficient serves every SNR
            power = inst.y.abs().square().mean(-1)
            extra = batch_scalar(relative, power) * power
            inflation = extra if inflation is None else batch_scalar(inflation, power) + extra
        points = problem.points(x)
        if self.exact_interferers:
            est, nu, mf, leak, mean, var = sic_statistics(problem, inst, x, inflation, leakage=True)
            cal = (net["scale"], net["floor"]) if net is not None else (None, None)
            base = mixture_logits(est, nu, leak, mean, var, logp, points, *cal)
            # the network sees the total variance, calibrated alike (a user whose error is mostly one
            # uncertain interferer must not look reliable to it)
            nu_cal = nu if net is None else net["scale"] * nu + net["floor"]
        else:
            est, nu, mf = sic_statistics(problem, inst, x, inflation)
            if net is None:
                base, nu_cal = gaussian_logits(est, nu, points), nu
            else:
                nu_cal = net["scale"] * nu + net["floor"]             # (U,) calibration of the Gaussian variance
                base = -(est.unsqueeze(-1) - points).abs().square() / nu_cal.unsqueeze(-1)
        if net is None:
            new = base
        else:
            new = torch.log_softmax(base + _per_user_mlp(net, deepsic_features(est, nu_cal, mf, logp)), -1)
        beta = params.get("damping")
        if params.get("damping_logit") is not None:
            beta = torch.sigmoid(params["damping_logit"])
        if beta is not None:
            b = batch_scalar(beta, new).clamp(0.0, 0.999)
            new = torch.logaddexp(torch.log1p(-b) + new, b.log() + logp)
        return State(new, x)


@ALGORITHMS.register
class SoftICMixture(SoftIC):
    """SIC with each user's strongest residual interferer kept exact (``mixture_logits``, module
    docstring); the same parameters and DeepSIC hook as ``SoftIC``."""

    name = "sic_mix"
    exact_interferers = 1


@ALGORITHMS.register
class DetNetStep:
    """DetNet's layer (module docstring). The iterate is (B, U, C + state_size): log-probabilities
    then the hidden state h_u. Per-layer parameters, each optional (absent: the classical value):
    ``step`` delta_k (1), ``temperature`` tau_k (1), ``detnet`` {w1 (F, h), b1, w2 (h, C + state_size),
    b2} the network shared by the users (absent: projection only)."""

    name = "detnet"
    parameters = ("step", "temperature", "detnet")
    problems = ("detection",)
    state_size = 8

    def __init__(self):
        self.normalize, self.extrapolation = None, "none"

    @classmethod
    def from_model_config(cls, cfg, problem) -> "DetNetStep":
        return cls()

    @classmethod
    def for_reference(cls, decl) -> "DetNetStep":
        return cls()

    def init_state(self, x0: torch.Tensor) -> State:
        pad = x0.new_zeros(*x0.shape[:-1], self.state_size)
        x = torch.cat([x0, pad], -1)
        return State(x, x)

    def step(self, problem, inst, state: State, params: dict) -> State:
        x = state.x
        C = problem.num_points
        logp, hidden = x[..., :C], x[..., C:]
        q, e = lmmse_gradient_step(problem, inst, x, params.get("step", 1.0))
        tau = e * batch_scalar(params.get("temperature", 1.0), e)
        base = -(q.unsqueeze(-1) - problem.points(x)).abs().square() / tau.unsqueeze(-1)
        net = params.get("detnet")
        if net is None:                                          # the classical layer: projection only
            return State(torch.cat([torch.log_softmax(base, -1), hidden], -1), x)
        feats = torch.cat([torch.stack([q.real, q.imag, tau.log()], -1), logp.exp(), hidden], -1)
        out = _mlp(net, feats)
        new = torch.log_softmax(base + out[..., :C], -1)
        return State(torch.cat([new, torch.tanh(out[..., C:])], -1), x)


def lmmse_gradient_step(problem, inst, x, step) -> Tuple[torch.Tensor, torch.Tensor]:
    """DetNet's preconditioned gradient step (module docstring) from the iterate x (its soft symbols:
    mean m (B, U) complex64, posterior variances v (B, U)); ``step`` delta (a scalar or (B,)).
    Returns q (B, U) complex64 and its per-user error variance e (B, U) float32 (> 0): one U x U
    solve per sample and layer, the SIC step's."""
    m, v = problem.soft_symbols(x)
    est, nu, _ = sic_statistics(problem, inst, x, moments=(m, v))
    delta = batch_scalar(step, nu)
    q = est - (1.0 - delta) * (est - m)              # = m + delta (s^ - m), and exactly s^ at delta = 1
    e = (1.0 - delta).square() * v + delta.square() * nu
    return q, e.clamp_min(1e-9)


# ---- classical detectors (ZF and LMMSE live with the problem: they are its closed forms) ------
def sic(problem, inst, iterations: int, damping: float = 0.0, inflation: float = 0.0,
        exact_interferers: int = 0) -> torch.Tensor:
    """``iterations`` of classical soft interference cancellation from the uniform start, with a
    fixed damping and noise inflation (both 0: the textbook detector); ``exact_interferers`` 1 keeps
    each user's strongest residual interferer exact (``SoftICMixture``), 0 treats all as Gaussian."""
    if exact_interferers not in (0, 1):
        raise ConfigError(f"sic: exact_interferers must be 0 or 1 (got {exact_interferers!r})")
    p = {"damping": damping if damping > 0 else None, "noise_inflation": inflation if inflation > 0 else None}
    return solve(problem, inst, SoftICMixture() if exact_interferers else SoftIC(), p, iterations).x


def detnet_classical(problem, inst, iterations: int) -> torch.Tensor:
    """``iterations`` of DetNet's layer with its classical parameters (delta = tau = 1, no network)
    from the uniform start: the network's equal-depth classical baseline, log-probabilities (B, U, C)."""
    return problem.log_probs(solve(problem, inst, DetNetStep(), {}, iterations).x)


def candidates(problem, users: int, device="cpu") -> torch.Tensor:
    """Every symbol vector, (C^U, U) int64 indices (C^U <= ML_MAX_CANDIDATES)."""
    C = problem.num_points
    if C ** users > ML_MAX_CANDIDATES:
        raise ConfigError(f"exhaustive ML needs {C}^{users} = {C ** users} candidates (at most "
                          f"{ML_MAX_CANDIDATES}); use K-best for this size")
    return torch.tensor(list(itertools.product(range(C), repeat=users)), dtype=torch.int64, device=device)


@torch.no_grad()
def ml(problem, inst, chunk: Optional[int] = None) -> torch.Tensor:
    """Exact per-user symbol posteriors (uniform prior, the linear Gaussian model) by enumeration:
    log P_u(c) = logsumexp over vectors with s_u = c of -||y - H s||^2 / s2, normalised (B, U, C).
    The argmax of the joint metric is the ML vector; the marginal argmax (what ``hard`` takes) is
    the per-user MAP decision, equal to it or better in SER. The candidates are in lexicographic
    order, so the metric reshaped to (b, C, ..., C) has user u on axis u + 1 and each marginal is one
    logsumexp over the other axes."""
    U, C = inst.H.shape[-1], problem.num_points
    cand = candidates(problem, U, inst.y.device)                                   # (M, U)
    X = problem.points(inst.y)[cand]                                               # (M, U)
    chunk = chunk or max(1, 2 ** 22 // (cand.shape[0] * inst.H.shape[-2]))          # ~32 MB of residuals per chunk
    out = []
    for lo in range(0, inst.batch_size, chunk):
        H, y, s2 = inst.H[lo:lo + chunk], inst.y[lo:lo + chunk], inst.noise_var[lo:lo + chunk]
        metric = -(y.unsqueeze(1) - torch.einsum("bnu,mu->bmn", H, X)).abs().square().sum(-1) / s2.unsqueeze(-1)
        grid = metric.view(-1, *([C] * U))
        marg = [torch.logsumexp(grid, dim=[d + 1 for d in range(U) if d != u]) if U > 1 else grid for u in range(U)]
        out.append(torch.log_softmax(torch.stack(marg, 1), -1))
    return torch.cat(out)


def ml_vector(problem, inst, chunk: Optional[int] = None) -> torch.Tensor:
    """The joint ML decision (B, U) int64 (argmin ||y - H s||^2 by enumeration, in chunks)."""
    U = inst.H.shape[-1]
    cand = candidates(problem, U, inst.y.device)
    X = problem.points(inst.y)[cand]
    chunk = chunk or max(1, 2 ** 22 // (cand.shape[0] * inst.H.shape[-2]))
    out = []
    for lo in range(0, inst.batch_size, chunk):
        d = (inst.y[lo:lo + chunk].unsqueeze(1) - torch.einsum("bnu,mu->bmn", inst.H[lo:lo + chunk], X)).abs().square().sum(-1)
        out.append(cand[d.argmin(-1)])
    return torch.cat(out)


def _sionna_inputs(problem, inst):
    s = inst.noise_var.view(-1, 1, 1) * torch.eye(inst.H.shape[-2], dtype=torch.complex64, device=inst.H.device)
    return inst.y, inst.H, s


HARD_LOGIT = 30.0
"""A hard decision as log-probabilities: the chosen point log_softmax(30) (about -1e-12), the others
about -30 (Sionna's K-best gives soft symbols only through its bit output)."""


def hard_log_probs(idx: torch.Tensor, num_points: int) -> torch.Tensor:
    """Log-probabilities (B, U, C) of hard decisions idx (B, U) int64."""
    return torch.log_softmax(HARD_LOGIT * torch.nn.functional.one_hot(idx, num_points).float(), -1)


def kbest(problem, inst, k: int = 16) -> torch.Tensor:
    """Sionna's K-best detector (``sionna.phy.mimo.KBestDetector``, the K best paths kept at each
    level of the sorted QR tree search), hard symbol decisions as log-probabilities (B, U, C)."""
    from sionna.phy.mimo import KBestDetector
    det = KBestDetector("symbol", inst.H.shape[-1], k, "qam", problem.bits_per_symbol, hard_out=True)
    y, H, s = _sionna_inputs(problem, inst)
    return hard_log_probs(det(y, H, s).long(), problem.num_points)


def ep(problem, inst, iterations: int = 10) -> torch.Tensor:
    """Sionna's expectation-propagation detector (``sionna.phy.mimo.EPDetector``, symbol output),
    log-probabilities (B, U, C)."""
    from sionna.phy.mimo import EPDetector
    det = EPDetector("symbol", problem.bits_per_symbol, hard_out=False, l=iterations)
    y, H, s = _sionna_inputs(problem, inst)
    return torch.log_softmax(det(y, H, s).float(), -1)


__all__ = ["SoftIC", "SoftICMixture", "mixture_logits", "DetNetStep", "lmmse_gradient_step", "detnet_classical", "gaussian_logits", "sic_statistics", "zf", "lmmse", "sic", "ml",
           "ml_vector", "kbest", "ep", "ML_MAX_CANDIDATES"]
