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
from .base import Problem, ProblemConfig, ReferenceSolver, abs2, frob2, norm_ratio, rmul

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


def sum_rate_coefficients(Z: torch.Tensor, noise_var: torch.Tensor, weights) -> torch.Tensor:
    """The sum-rate gradient's factor C in dR/dRe(V) + j dR/dIm(V) = H^H C, (B, K, K) complex.

    Args: Z = H V (B, K, K) complex (Z[k, j] = h_k^H v_j), noise_var (B,), weights a: (B or 1, K)
    float, a scalar, or None (all 1). C = (2 / ln2) A o Z with A_kj = a_k (1 / T_k - 1 / I_k) for
    j != k and a_k / T_k for j = k (T_k received power plus noise, I_k = T_k - |Z_kk|^2, kept >= 1e-12 T_k),
    formed as a row scaling of Z and its diagonal set, in few operations (each costs about as much as the
    arithmetic at K x K)."""
    sq = torch.view_as_real(Z.resolve_conj()).square()                                    # (B, K, K, 2)
    T = sq.sum((-2, -1)) + noise_var.unsqueeze(-1)                                          # (B, K)
    I = torch.maximum(T - torch.diagonal(sq, dim1=1, dim2=2).sum(1), 1e-12 * T)
    own, own_i = (2.0 / LN2) / T, (2.0 / LN2) / I                                       # a_k / T_k, a_k / I_k (x 2 / ln2)
    if weights is not None:
        a = torch.as_tensor(weights, dtype=T.dtype, device=T.device)
        own, own_i = a * own, a * own_i
    C = Z * (own - own_i).unsqueeze(-1)
    C.diagonal(dim1=-2, dim2=-1).copy_(torch.diagonal(Z, dim1=-2, dim2=-1) * own)   # set, not added: no cancellation at high SINR
    return C


def sum_rate_gradient(H: torch.Tensor, V: torch.Tensor, noise_var: torch.Tensor, weights) -> torch.Tensor:
    """dR/dRe(V) + j dR/dIm(V) of the weighted sum rate R = sum_k a_k log2(T_k / I_k), (B, n_tx, K).

    Args: H (B, K, n_tx) complex, V (B, n_tx, K) complex, noise_var (B,), weights a: (B or 1, K)
    float, a scalar, or None (all 1). With Z = H V: grad = H^H C, C = ``sum_rate_coefficients(Z)``
    = (2 / ln2) A o Z, A_kj = a_k (1 / T_k - 1 / I_k) for j != k and a_k / T_k for j = k."""
    return H.mH @ sum_rate_coefficients(H @ V, noise_var, weights)


SELECT_CANDIDATES = 2
"""Users ``rzf_select`` tries switching off: the ones with the largest diagonal of (H H^H + lambda I)^{-1}."""


def rzf_select(H: torch.Tensor, noise_var: torch.Tensor, power: float, weights, candidates: int = SELECT_CANDIDATES) -> torch.Tensor:
    """RZF with user selection: per channel, the highest weighted sum rate among RZF on all K users and
    RZF with one user switched off, for the ``candidates`` users with the largest diagonal entries of
    M = (H H^H + K s2 / P I)^{-1} (the users zero forcing pays the most power for), at full power.

    When two users' channels are nearly parallel, the sum-rate optimum often serves only one of them;
    a gradient method started from RZF cannot switch a user off in a few steps (a switched-off user's
    gradient is zero, so it stays off). ``rzf_select_rows`` gives the choice as V = H^H X.

    Args: H (B, K, n_tx) complex, noise_var (B,), power P, weights (K,), (1, K) or (B, K) float, or None
    (all 1).
    Returns: V (B, n_tx, K) complex64 with ||V||_F^2 = P (column i zero where user i was dropped)."""
    load = rzf_load(noise_var, power, H.shape[1])
    return at_full_power(H.mH @ rzf_select_rows(rzf_inverse(H @ H.mH, load), load, noise_var, power, weights, candidates),
                         power)


def at_full_power(V: torch.Tensor, power: float) -> torch.Tensor:
    """V (B, n_tx, K) complex scaled from its own norm to ||V||_F^2 = P, complex64."""
    return rmul(V, (power / frob2(V).clamp_min(1e-30)).sqrt().view(-1, 1, 1)).to(torch.complex64)


def rzf_load(noise_var: torch.Tensor, power: float, n_users: int) -> torch.Tensor:
    """RZF's regularisation K s2 / P, (B,)."""
    return n_users * noise_var / power


def rzf_inverse(G: torch.Tensor, load: torch.Tensor) -> torch.Tensor:
    """M = (G + load I)^{-1}, (B, K, K) complex, row-major: G (B, K, K) Hermitian positive semidefinite
    (not modified), load (B,) > 0. An LU inverse (a Cholesky factor is slightly cheaper but fails in
    float32 where the load is tiny against a rank-deficient G), with no check and no synchronisation;
    differentiable where G or the load is."""
    A = G.clone()
    A.diagonal(dim1=-2, dim2=-1).add_(load.to(A.real.dtype).view(-1, 1))
    # LAPACK returns it column-major, and every elementwise operation on it (and a solver's state built
    # from it) is slower on that layout than one copy
    return torch.linalg.inv_ex(A)[0].contiguous()


def rzf_signals(M: torch.Tensor, load: torch.Tensor) -> torch.Tensor:
    """G M = I - load M for M = (G + load I)^{-1}, (B, K, K): the received signals of V = H^H M without a
    product with G (which would lose about cond(G) times the rounding of M)."""
    Z = M * -load.to(M.real.dtype).view(-1, 1, 1)
    Z.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return Z


def rzf_select_rows(M: torch.Tensor, load: torch.Tensor, noise_var: torch.Tensor, power: float, weights,
                    candidates: int = SELECT_CANDIDATES, with_signals: bool = False):
    """``rzf_select``'s choice in the row space: X (B, K, K) complex with V = H^H X, not scaled to the
    power (column i exactly zero where user i was dropped).

    With M = (G + load I)^{-1} (RZF: V = H^H M), dropping user i is the Schur downdate
    X_i = M - M[:, i] M[i, :] / M_ii (the inverse of the other users' Gram matrix plus the same load, row
    and column i zero), and its received signals are G X_i = I - load X_i - e_i M[i, :] / M_ii: the
    candidates cost elementwise work on K x K matrices, no product with G or H. Each candidate's
    weighted sum rate is taken at full power, ||H^H X||_F^2 = Re <X, G X>.

    Args: M = ``rzf_inverse(G, load)`` (B, K, K) complex, load (B,) = ``rzf_load``, noise_var (B,), power
    P, weights as ``rzf_select``.
    Returns: X, and with ``with_signals`` (X, Z), Z = G X (B, K, K) from the identities above (as
    accurate as M itself: the product G X would lose about cond(G) times the rounding of X).
    The choice is per channel; the chosen X and Z are differentiable where M and the load are."""
    B, K = M.shape[0], M.shape[1]
    l3 = load.to(M.real.dtype).view(-1, 1, 1)
    Z0 = rzf_signals(M, load)
    c = min(candidates, K) if K > 1 else 0                         # one user: nobody to drop
    if c < 1:
        return (M, Z0) if with_signals else M
    # every candidate at once, (B, c + 1, K, K): RZF, then RZF without user drop[:, j]
    top, drop = torch.diagonal(M, dim1=-2, dim2=-1).real.topk(c, -1)                     # (B, c), M_ii > 0
    cols = torch.gather(M, 1, drop.unsqueeze(-1).expand(B, c, K)).conj()                 # M[i, :]^* = M[:, i]^T (B, c, K)
    rows = cols.conj() / top.unsqueeze(-1)                                                # M[i, :] / M_ii
    outer = cols.unsqueeze(-1) * rows.unsqueeze(-2)                                       # M[:, i] M[i, :] / M_ii
    hot = (drop.unsqueeze(-1) == torch.arange(K, device=M.device)).to(M.real.dtype)      # e_i (B, c, K)
    X = torch.cat([M.unsqueeze(1), M.unsqueeze(1) - outer], 1)
    Z = torch.cat([Z0.unsqueeze(1), Z0.unsqueeze(1) + outer * l3.unsqueeze(1) - hot.unsqueeze(-1) * rows.unsqueeze(-2)], 1)
    # weighted sum rate of each V = H^H X at power P: its gains are |Z_kj|^2 q s2 with
    # q = P / (Re <X, Z> s2), so T_k / s2 = q sum_j |Z_kj|^2 + 1 and I_k / s2 = T_k / s2 - q |Z_kk|^2
    with torch.no_grad():                                                                 # only the choice
        Xr, Zr = torch.view_as_real(X), torch.view_as_real(Z)
        q = power / (torch.linalg.vecdot(Xr.flatten(2), Zr.flatten(2)).clamp_min(1e-30) * noise_var.unsqueeze(-1))
        sq = Zr.square()
        T = sq.sum((-2, -1)) * q.unsqueeze(-1)                                            # (B, c + 1, K)
        I = (T - torch.diagonal(sq, dim1=-3, dim2=-2).sum(-2) * q.unsqueeze(-1)).clamp_min(0.0)
        r = torch.log2((T + 1.0) / (I + 1.0))
        if weights is not None:
            r = torch.as_tensor(weights, dtype=r.dtype, device=r.device).reshape(-1, 1, K) * r
        best = r.sum(-1).argmax(-1)                                                       # (B,), 0: all users
    at = torch.arange(B, device=M.device)
    # the dropped user's column exactly zero (so it stays off under any solver)
    keep = (1.0 - torch.cat([torch.zeros_like(hot[:, :1]), hot], 1)[at, best]).unsqueeze(1)   # (B, 1, K)
    X = X[at, best] * keep
    return (X, Z[at, best] * keep) if with_signals else X


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

    conditioning = "log10 tr(A) tr(A^-1) / K^2, A = H H^H + K s2 / P I"
    """What ``log_condition`` computes, recorded with a saved model that conditions on it (``artifacts``)."""

    def log_condition(self, inst) -> torch.Tensor:
        """How far the channel's rows are from orthogonal, as regularised zero forcing sees them, (B,)
        float32: log10 of tr(A) tr(A^-1) / K^2 for A = H H^H + K s2 / P I (RZF's Gram matrix; the
        arithmetic over the harmonic mean of its eigenvalues, ``problems.base.log_condition`` of A), in
        [0, 6]. The second feature ``model.cond_knots`` conditions the per-layer scalars on. Taken from
        RZF's inverse (``rzf_inverse``), which the start shares, so it costs a trace. Where the load is
        small against G's eigenvalues (high SNR, K <= n_tx) it is the unregularised feature; at low SNR
        the load pulls it towards 0, as it does RZF's power penalty; with K > n_tx, G is singular and it
        grows with the SNR (tr(A^-1) >= (K - n_tx) / load) up to its cap."""
        with torch.no_grad():
            G, M = self.gram(inst), self.rzf_inverse(inst)
            K = self.n_users
            tr_a = torch.diagonal(G, dim1=-2, dim2=-1).real.sum(-1) + K * self.rzf_load(inst)
            tr_m = torch.diagonal(M, dim1=-2, dim2=-1).real.sum(-1)
            return torch.log10((tr_a * tr_m).clamp_min(1e-30) / (K * K)).clamp(0.0, 6.0).float()

    @staticmethod
    def _per_batch(inst, key, compute):
        """``compute()``, kept in ``inst.derived[key]`` for the batch's later calls; never kept for a channel
        that carries a gradient (one backward pass would consume it, and a value computed under no_grad
        would cut the gradient of the next call)."""
        if inst.H.requires_grad or inst.noise_var.requires_grad:
            return compute()
        if key not in inst.derived:
            inst.derived[key] = compute()
        return inst.derived[key]

    def gram(self, inst) -> torch.Tensor:
        """G = H H^H, (B, K, K) complex, computed once per batch (``_per_batch``)."""
        return self._per_batch(inst, "gram", lambda: inst.H @ inst.H.mH)

    def rzf_load(self, inst) -> torch.Tensor:
        """RZF's regularisation K s2 / P, (B,)."""
        return rzf_load(inst.noise_var, self.power, self.n_users)

    def rzf_inverse(self, inst) -> torch.Tensor:
        """M = (G + K s2 / P I)^{-1} (RZF: V = H^H M), (B, K, K) complex, once per batch and power (``_per_batch``)."""
        return self._per_batch(inst, ("rzf_inverse", self.power), lambda: rzf_inverse(self.gram(inst), self.rzf_load(inst)))

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

    # ---- row space (``ProximalGradient``'s K x K path) ----------------------------------------
    def row_space_start(self, inst, method: Optional[str] = None):
        """The start in the row space of H: (G, X, Z) with G = H H^H (B, K, K), the start V = H^H X up to
        its scale (``init`` scales it to full power): rzf M = (G + K s2 / P I)^{-1}, zf (G + eps I)^{-1}
        (eps 1e-6 of G's mean eigenvalue keeps it defined when K > n_tx), mrt I, rzf_select
        ``rzf_select_rows``; and its received signals Z = H V = G X, from the inverse's identity
        G M = I - load M where there is one (accurate where the product G M would lose digits to G's
        conditioning). Every gradient of the sum rate is H^H C for a K x K C (``row_space_coefficients``),
        so projected gradient ascent from such a start never leaves the row space and runs on K x K
        matrices (``ProximalGradient``)."""
        method = method or self.init_method
        G = self.gram(inst)
        if method == "rzf_select":
            return (G, *rzf_select_rows(self.rzf_inverse(inst), self.rzf_load(inst), inst.noise_var, self.power,
                                        self._weights_or_none(inst), with_signals=True))
        if method == "mrt":
            return G, torch.eye(self.n_users, dtype=G.dtype, device=G.device).expand_as(G), G
        if method == "rzf":
            M, load = self.rzf_inverse(inst), self.rzf_load(inst)
        elif method == "zf":
            load = 1e-6 * torch.diagonal(G, dim1=-2, dim2=-1).real.mean(-1)
            M = rzf_inverse(G, load)
        else:
            raise ConfigError(f"mu_miso: unknown init {method!r}; allowed: {', '.join(INITS)}")
        return G, M, rzf_signals(M, load)

    def row_space_coefficients(self, Z, inst) -> torch.Tensor:
        """C (B, K, K) complex with gradient H^H C at the precoder whose received signals are Z = H V
        (``sum_rate_coefficients``)."""
        return sum_rate_coefficients(Z, inst.noise_var, self._weights_or_none(inst))

    def init(self, inst, method: Optional[str] = None, seed=0) -> torch.Tensor:
        """Linear precoder at full power, (B, n_tx, K) complex64: H^H X for ``row_space_start``'s X
        (rzf H^H (H H^H + K s2 / P I)^{-1}, zf H^H (H H^H)^{-1}, mrt H^H, rzf_select ``rzf_select``),
        scaled from its own norm."""
        return at_full_power(inst.H.mH @ self.row_space_start(inst, method)[1], self.power)

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
