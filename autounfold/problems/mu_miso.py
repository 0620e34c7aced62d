"""Multi-user MISO downlink: maximise the (weighted) sum rate of K single-antenna users under a
total power constraint. No closed form; the classical solver is WMMSE (``algorithms.wmmse``)."""
from __future__ import annotations

import math
from typing import List, Literal, Optional

import torch
from pydantic import Field, model_validator

from ..channels.base import CHANNEL_SAMPLING_KEYS, ChannelBatch, ChannelConfig, ChannelSource, build_channel, check_channel
from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from .base import Problem, ProblemConfig, ReferenceSolver, abs2, frob2, log_condition, norm_ratio, rmul

LN2 = math.log(2.0)


def interference(H: torch.Tensor, V: torch.Tensor, noise_var: torch.Tensor):
    """What every user receives from precoder V.

    Args: H (B, K, n_tx) complex (row k: h_k^H), V (B, n_tx, K) complex, noise_var (B,) float.
    Returns: Z (B, K, K) complex with Z[k, j] = h_k^H v_j; T (B, K) received power plus noise;
    I (B, K) interference plus noise (T minus user k's own signal, kept >= 1e-12 T).
    """
    Z = H @ V
    gains = abs2(Z)
    T = gains.sum(-1) + noise_var.unsqueeze(-1)
    signal = torch.diagonal(gains, dim1=-2, dim2=-1)
    return Z, T, (T - signal).clamp_min(1e-12 * T)


def sum_rate_gradient(H: torch.Tensor, V: torch.Tensor, noise_var: torch.Tensor, weights) -> torch.Tensor:
    """dR/dRe(V) + j dR/dIm(V) of the weighted sum rate R = sum_k a_k log2(T_k / I_k), (B, n_tx, K).

    Args: H (B, K, n_tx) complex, V (B, n_tx, K) complex, noise_var (B,), weights a: (B or 1, K)
    float, a scalar, or None (all 1). With Z = H V: grad = (2 / ln2) H^H (A o Z), A_kj = a_k (1 / T_k - 1 / I_k)
    for j != k and a_k / T_k for j = k."""
    Z, T, I = interference(H, V, noise_var)
    inv_T = 1.0 / T
    off, own = inv_T - 1.0 / I, inv_T
    if weights is not None:
        a = torch.as_tensor(weights, dtype=T.dtype, device=T.device)
        off, own = a * off, a * own
    coef = off.unsqueeze(-1).expand_as(Z.real).clone()
    coef.diagonal(dim1=-2, dim2=-1).copy_(own.expand_as(T))
    return (2.0 / LN2) * (H.mH @ rmul(Z, coef))


SELECT_CANDIDATES = 2
"""Users ``rzf_select`` tries switching off: the ones with the largest diagonal of (H H^H + lambda I)^{-1}."""


def rzf_select(H: torch.Tensor, noise_var: torch.Tensor, power: float, weights, candidates: int = SELECT_CANDIDATES) -> torch.Tensor:
    """RZF with user selection: per channel, the highest weighted sum rate among RZF on all K users and
    RZF with one user switched off, for the ``candidates`` users with the largest diagonal entries of
    M = (H H^H + K s2 / P I)^{-1} (the users zero forcing pays the most power for), at full power.

    When two users' channels are nearly parallel, the sum-rate optimum often serves only one of them;
    a gradient method started from RZF cannot switch a user off in a few steps (a switched-off user's
    gradient is zero, so it stays off). Dropping user i is the Schur downdate X = M - M[:, i] M[i, :] / M_ii
    (the inverse of the other users' Gram matrix plus the same load K s2 / P, row and column i zero), so
    the candidates cost one K x K inverse and K x K products; V = H^H X.

    Args: H (B, K, n_tx) complex, noise_var (B,), power P, weights (K,), (1, K) or (B, K) float, or None
    (all 1).
    Returns: V (B, n_tx, K) complex64 with ||V||_F^2 = P (column i zero where user i was dropped)."""
    B, K = H.shape[0], H.shape[1]
    A = H @ H.mH                                                                            # G, then G + load I
    load = (K * noise_var / power).to(A.real.dtype)
    A.diagonal(dim1=-2, dim2=-1).add_(load.view(-1, 1))
    M = torch.linalg.inv_ex(A)[0]                                                           # A is PD (load > 0): no check, no sync
    # H V = G X without another product: G M = I - load M
    Z0 = rmul(M, -load.view(-1, 1, 1))
    Z0.diagonal(dim1=-2, dim2=-1).add_(1.0)
    X, Z = [M], [Z0]
    keep = torch.ones(B, 1, K, dtype=A.real.dtype, device=A.device)                        # users each candidate serves
    if K > 1:
        diag = torch.diagonal(M, dim1=-2, dim2=-1).real                                    # (B, K), > 0
        drop = diag.topk(min(candidates, K), -1).indices                                    # (B, c)
        keep = torch.cat([keep, 1.0 - torch.nn.functional.one_hot(drop, K).to(keep.dtype)], 1)   # (B, c + 1, K)
        inv_diag = 1.0 / torch.gather(diag, 1, drop)                                        # 1 / M_ii, (B, c)
        for j in range(drop.shape[1]):
            col = torch.gather(M, 2, drop[:, j].view(-1, 1, 1).expand(B, K, 1))             # M[:, i] (B, K, 1)
            outer = col * rmul(col.mH, inv_diag[:, j].view(-1, 1, 1))                       # M[:, i] M[i, :] / M_ii
            X.append(M - outer)
            # G X = Z0 + load M[:, i] M[i, :] / M_ii - e_i M[i, :] / M_ii: the last term only changes user i's
            # row (and sets Z_ii to 0); user i is off, so its row is left out and its rate masked below
            Z.append(Z0 + rmul(outer, load.view(-1, 1, 1)))
    X, Z = torch.stack(X, 1), torch.stack(Z, 1)                                             # (B, c + 1, K, K)
    # ||H^H X||_F^2 = tr(X^H G X) for every candidate (X's column i is zero, up to rounding): good for the
    # ranking; it loses digits when the load dwarfs G (SNR far below 0 dB), so V is rescaled from its own norm
    power_now = (torch.view_as_real(X) * torch.view_as_real(Z)).sum((-3, -2, -1))
    scale = power / power_now.clamp_min(1e-30)
    gains = abs2(Z) * scale.unsqueeze(-1).unsqueeze(-1)
    T = gains.sum(-1) + noise_var.view(-1, 1, 1)
    signal = torch.diagonal(gains, dim1=-2, dim2=-1)
    rate = torch.log2(T / (T - signal).clamp_min(1e-12 * T)) * keep                         # (B, c + 1, K)
    if weights is not None:
        rate = torch.as_tensor(weights, dtype=T.dtype, device=T.device).reshape(-1, 1, K) * rate
    best = rate.sum(-1).argmax(-1)                                                          # (B,)
    pick = torch.arange(B, device=H.device)
    # the dropped user's column exactly zero (so it stays off under any solver), then V at power P exactly
    V = rmul(H.mH @ X[pick, best], keep[pick, best].unsqueeze(1))
    return rmul(V, (power / frob2(V).clamp_min(1e-30)).sqrt().view(-1, 1, 1)).to(torch.complex64)


INITS = ("rzf", "zf", "mrt", "rzf_select")


class MuMisoConfig(ProblemConfig):
    """``problem:`` of a multi-user downlink experiment (``name: mu_miso``).

    ``n_users`` is K; the channel section gives n_tx, the channel model, SNR range and power, and its
    ``n_rx`` is K (one receive antenna per user: leave it out, or give the same number)."""

    name: Literal["mu_miso"] = "mu_miso"
    n_users: int = Field(8, ge=1)
    user_weights: Optional[List[float]] = None
    init: Literal["rzf", "zf", "mrt", "rzf_select"] = "rzf"
    channel: ChannelConfig = ChannelConfig(model="iid_rayleigh", n_tx=16, n_rx=8)

    @model_validator(mode="before")
    @classmethod
    def _users_are_rows(cls, data):
        if isinstance(data, dict):
            k = data.get("n_users", 8)
            ch = dict(data.get("channel") or {})
            if "n_rx" in ch and ch["n_rx"] != k:
                raise ValueError(f"channel.n_rx ({ch['n_rx']}) is the number of users and must equal n_users ({k}); "
                                 "set both, or leave channel.n_rx out")
            ch["n_rx"] = k
            ch.setdefault("model", "iid_rayleigh")
            ch.setdefault("n_tx", 16)
            ch.setdefault("users", "multi")           # 3GPP sources: each row is its own single-antenna user
            data = {**data, "channel": ch}
        return data

    @model_validator(mode="after")
    def _weights(self):
        w = self.user_weights
        if w is not None and (len(w) != self.n_users or min(w) <= 0):
            raise ValueError(f"user_weights must be {self.n_users} positive numbers, one per user (got {w})")
        return self


def _change(n_tx=None, n_users=None, **channel) -> dict:
    out = {"channel": dict(channel)}
    if n_tx is not None:
        out["channel"]["n_tx"] = n_tx
    if n_users is not None:
        out["n_users"] = out["channel"]["n_rx"] = n_users
    return out


@PROBLEMS.register
class MuMisoProblem(Problem):
    """Downlink sum rate with K single-antenna users.

    H: (B, K, n_tx) complex64, row k is h_k^H.  V: (B, n_tx, K) complex64, column k is user k's
    precoder.  R(V) = sum_k a_k log2(1 + |h_k^H v_k|^2 / (sum_{j != k} |h_k^H v_j|^2 + s2)),
    ||V||_F^2 <= P.

    Args:
        source: the channel source (its n_rx is K).
        user_weights: a_k (default all 1).
        init: "rzf" (the default; regularised zero forcing, regularisation K s2 / P), "zf" or "mrt",
            scaled to full power; "rzf_select" (``preset:mu_miso``'s): RZF with user selection, per channel the best of RZF and RZF
            with one user switched off (``rzf_select``).
    """

    name = "mu_miso"
    Config = MuMisoConfig
    sense = 1.0
    scalings = ("norm",)
    default_scaling = "norm"
    score_key = "pct_of_reference"
    metrics = {"pct_of_reference": "100 x mean sum rate / mean sum rate of the reference (best-of-inits "
                                   "WMMSE run to convergence)",
               "p5_pct": "5th percentile over channels of 100 x rate / reference rate",
               "min_pct": "worst channel, % of its reference", "rate_mean": "mean sum rate, bit/s/Hz",
               "feasible": "every precoder inside the power constraint"}
    classical = ("wmmse", "wmmse_tuned", "pga_tuned", "rzf", "rzf_select", "zf", "mrt")
    sampling_keys = CHANNEL_SAMPLING_KEYS
    scenarios = {
        "nominal": ("nominal (the trained configuration)", {}),
        "8x4": ("8 antennas, 4 users, i.i.d.", _change(8, 4, model="iid_rayleigh")),
        "16x8": ("16 antennas, 8 users, i.i.d.", _change(16, 8, model="iid_rayleigh")),
        "64x16": ("64 antennas, 16 users, i.i.d.", _change(64, 16, model="iid_rayleigh")),
        "snr0": ("SNR 0 dB", _change(snr_db=[0.0, 0.0])),
        "snr10": ("SNR 10 dB", _change(snr_db=[10.0, 10.0])),
        "snr20": ("SNR 20 dB", _change(snr_db=[20.0, 20.0])),
        "snr30": ("SNR 30 dB", _change(snr_db=[30.0, 30.0])),
        "correlated": ("correlated Rayleigh, 15 deg", _change(model="correlated_rayleigh", angular_spread_deg=15.0, tx_rho=None)),
        "umi": ("3GPP UMi (Sionna, 3.5 GHz), users at their own positions", _change(model="umi")),
        "uma": ("3GPP UMa (Sionna, 3.5 GHz), users at their own positions", _change(model="uma")),
    }
    draws_channels = True
    # WMMSE from RZF, from MRT and from RZF with user selection, each channel until its sum rate
    # changes by less than 1e-6 (relative) in one iteration, at most 2000 iterations; the best of the
    # three per channel (whatever the problem's own init, so scores compare across inits)
    reference_solver = ReferenceSolver(algorithm="wmmse", params=(), inits=("rzf", "mrt", "rzf_select"), tol=1e-6,
                                       max_iterations=2000, per_sample=True)
    inputs = "H (B, K, n_tx) complex64 (row k: user k's channel h_k^H), noise_var (B,) float32"
    outputs = "V (B, n_tx, K) complex64 with ||V||_F^2 <= P (column k: user k's precoder)"

    @classmethod
    def from_config(cls, cfg: MuMisoConfig) -> "MuMisoProblem":
        return cls(build_channel(cfg.channel), user_weights=cfg.user_weights, init=cfg.init)

    @classmethod
    def memory_estimate(cls, cfg: MuMisoConfig, batch: int) -> dict:
        ch = cfg.channel
        return {"problem.channel.n_tx": 16 * ch.n_tx * ch.n_tx,
                "problem.n_users x n_tx x batch": 8 * 8 * batch * cfg.n_users * max(ch.n_tx, cfg.n_users)}

    def __init__(self, source: ChannelSource, user_weights: Optional[List[float]] = None, init: str = "rzf"):
        if init not in INITS:
            raise ConfigError(f"mu_miso: init must be one of {', '.join(INITS)} (got {init!r})")
        if user_weights is not None and (len(user_weights) != source.n_rx or min(user_weights) <= 0):
            raise ConfigError(f"mu_miso: user_weights must be {source.n_rx} positive numbers (got {user_weights})")
        self.source, self.init_method = source, init
        self.n_tx, self.n_users, self.power = source.n_tx, source.n_rx, source.power
        self.n_rx = self.n_streams = self.n_users        # H rows and V columns, for the generic tools
        self.constraint = "total"
        self.weights = None if user_weights is None else [float(w) for w in user_weights]

    def settings(self):
        return {"n_users": self.n_users, "init": self.init_method, "user_weights": self.weights}

    def signature(self) -> dict:
        return {"problem": self.name, "n_tx": self.n_tx, "n_users": self.n_users, "user_weights": self.weights}

    def describe(self) -> dict:
        return {"problem": self.name, **self.settings(), "channel": self.source.describe()}

    # ---- instances -------------------------------------------------------------------------
    def sample(self, batch: int, seed, device="cpu") -> ChannelBatch:
        return self.source.sample(batch, seed, device)

    def instance(self, H: torch.Tensor, noise_var: torch.Tensor) -> ChannelBatch:
        """Validated instance from H (B, K, n_tx) complex and noise_var (B,) float."""
        check_channel(H, noise_var, self.n_tx)
        if H.shape[1] != self.n_users:
            raise InputError(f"H has {H.shape[1]} rows (users) but the model was built for n_users={self.n_users}")
        snr_db = 10.0 * torch.log10(self.power / noise_var)
        return ChannelBatch(H.to(torch.complex64), noise_var.float(), snr_db.float())

    def accept(self, batch: ChannelBatch) -> ChannelBatch:
        return self.instance(batch.H, batch.noise_var)

    def log_condition(self, inst) -> torch.Tensor:
        """How far the channel's rows are from orthogonal (``problems.base.log_condition``: log10 of
        tr(G) tr(G^-1) / m^2 for its Gram matrix G), (B,) float32: the second feature ``model.cond_knots``
        conditions the per-layer scalars on."""
        return log_condition(inst.H)

    def _weights_or_none(self, inst):
        """``user_weights(inst)``, or None when every weight is 1 (the sum-rate formulas then skip them)."""
        return None if self.weights is None else self.user_weights(inst)

    def user_weights(self, inst) -> torch.Tensor:
        """(1, K) float32 user weights a_k."""
        w = torch.ones(self.n_users) if self.weights is None else torch.tensor(self.weights)
        return w.to(device=inst.H.device, dtype=torch.float32).unsqueeze(0)

    # ---- math --------------------------------------------------------------------------------
    def _terms(self, V, inst):
        return interference(inst.H, V, inst.noise_var)

    def rates(self, V, inst) -> torch.Tensor:
        """Per-user rates log2(1 + SINR_k), (B, K) float32."""
        _, T, I = self._terms(V, inst)
        return torch.log2(T / I)

    def objective(self, V, inst) -> torch.Tensor:
        """Weighted sum rate in bit/s/Hz, (B,) float32."""
        return (self.user_weights(inst) * self.rates(V, inst)).sum(-1)

    def gradient(self, V, inst, operator=None) -> torch.Tensor:
        """dR/dRe(V) + j dR/dIm(V), (B, n_tx, K) complex64.

        With Z = H V, T_k the received power plus noise and I_k = T_k - |Z_kk|^2,
        grad = (2 / ln2) H^H (A o Z),  A_kj = a_k (1 / T_k - 1 / I_k) for j != k and a_k / T_k for
        j = k: it lies in the row space of H, like every WMMSE iterate."""
        return sum_rate_gradient(inst.H, V, inst.noise_var, self._weights_or_none(inst))

    def curvature(self, V, inst, mode: str = "norm") -> torch.Tensor:
        """The scale the gradient is divided by, (B,) float32. ``norm``: ||grad||_F / ||V||_F, so
        that a step alpha moves V by alpha ||V||_F: step sizes are then free of the SNR and of the
        channel's scale (the raw gradient grows as the noise falls)."""
        if mode != "norm":
            raise ConfigError(f"mu_miso: unknown gradient scaling {mode!r}; allowed: {', '.join(self.scalings)}")
        return self.scaled_direction(V, inst, mode)[1]

    def scaled_direction(self, V, inst, mode, operator=None):
        """The gradient and, for ``norm``, its norm over ||V||_F, from one gradient evaluation."""
        g = self.gradient(V, inst)
        if not mode:
            return g, None
        if mode != "norm":
            raise ConfigError(f"mu_miso: unknown gradient scaling {mode!r}; allowed: {', '.join(self.scalings)}")
        return g, norm_ratio(g, V)

    def prox(self, Z, inst, threshold=None) -> torch.Tensor:
        """Projection onto ||V||_F^2 <= P (a scaling; ``threshold`` is unused)."""
        norm = frob2(Z).sqrt().view(-1, 1, 1)
        return rmul(Z, torch.clamp(math.sqrt(self.power) / norm.clamp_min(1e-30), max=1.0))

    def feasible(self, V, inst, rtol: float = 1e-5) -> torch.Tensor:
        return frob2(V) <= self.power * (1 + rtol)

    def init(self, inst, method: Optional[str] = None, seed=0) -> torch.Tensor:
        """Linear precoder at full power, (B, n_tx, K) complex64: rzf H^H (H H^H + K s2 / P I)^{-1},
        zf H^H (H H^H)^{-1} (a 1e-6 relative load keeps it defined when K > n_tx), mrt H^H, or
        rzf_select (``rzf_select``)."""
        method = method or self.init_method
        H = inst.H
        if method == "rzf_select":
            return rzf_select(H, inst.noise_var, self.power, self._weights_or_none(inst))
        if method == "mrt":
            V = H.mH
        elif method in ("rzf", "zf"):
            G = H @ H.mH
            eye = torch.eye(self.n_users, dtype=G.dtype, device=G.device)
            if method == "rzf":
                load = (self.n_users * inst.noise_var / self.power).view(-1, 1, 1)
            else:
                load = 1e-6 * torch.diagonal(G, dim1=-2, dim2=-1).real.mean(-1).view(-1, 1, 1)
            V = H.mH @ torch.linalg.inv(G + load * eye)
        else:
            raise ConfigError(f"mu_miso: unknown init {method!r}; allowed: {', '.join(INITS)}")
        norm = frob2(V).sqrt().view(-1, 1, 1).clamp_min(1e-30)
        return (V / norm * math.sqrt(self.power)).to(torch.complex64)

    def loss_scale(self, inst) -> torch.Tensor:
        """Per-sample scale of the relative loss: the RZF sum rate (cheap, within a few % of the
        optimum at every SNR), (B,)."""
        with torch.no_grad():
            return self.objective(self.init(inst, "rzf"), inst).clamp_min(1e-6)

    def supervised_loss(self, V, inst, V_ref) -> torch.Tensor:
        """Relative squared distance of the received-signal matrices H V and H V_ref, (B,)."""
        return frob2(inst.H @ (V - V_ref)) / frob2(inst.H @ V_ref).clamp_min(1e-30)

    def summarize(self, V, inst, V_ref) -> dict:
        """pct_of_reference = 100 mean R / mean R_ref; p5_pct / min_pct over channels of 100 R / R_ref;
        rate_mean; feasible (every sample within P (1 + 1e-5))."""
        r, r_ref = self.objective(V, inst).double(), self.objective(V_ref, inst).double()
        ratio = 100.0 * r / r_ref.clamp_min(1e-12)
        return {"pct_of_reference": float(100.0 * r.mean() / r_ref.mean()),
                "p5_pct": float(torch.quantile(ratio, 0.05)), "min_pct": float(ratio.min()),
                "rate_mean": float(r.mean()), "feasible": bool(self.feasible(V, inst).all())}
