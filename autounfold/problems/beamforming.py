"""Downlink MIMO beamforming: maximise spectral efficiency under a power constraint."""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from pydantic import Field

from ..channels.base import CHANNEL_SAMPLING_KEYS, ChannelBatch, ChannelConfig, ChannelSource, build_channel, check_channel
from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from ..seeding import as_generator
from .base import Problem, ProblemConfig, ReferenceSolver, frob2, log_condition, scale_rows

LN2 = math.log(2.0)


def water_filling(gains: torch.Tensor, power: float) -> torch.Tensor:
    """Water-filling powers over parallel channels.

    Args:
        gains: (B, S) float, channel gains g_i = lambda_i / noise_var, sorted descending, >= 0.
        power: total power P.
    Returns:
        (B, S) float powers p_i = max(0, mu - 1/g_i) with sum_i p_i = P.
    """
    inv = 1.0 / gains.clamp_min(1e-30)
    k = torch.arange(1, gains.shape[-1] + 1, device=gains.device, dtype=gains.dtype)
    mu = (power + torch.cumsum(inv, -1)) / k                      # water level if the k best are active
    active = mu > inv                                                # valid prefix lengths
    n_active = active.to(torch.int64).cumprod(-1).sum(-1).clamp_min(1)
    level = mu.gather(-1, (n_active - 1).unsqueeze(-1))
    return (level - inv).clamp_min(0.0)


def logdet_system(H: torch.Tensor, W: torch.Tensor, s2: torch.Tensor):
    """G = H W and M = I_S + G^H G / s2 for SE(W) = log2 det M (Sylvester: S x S, not n_rx x n_rx).

    H (..., n_rx, n_tx), W (..., n_tx, S) complex, s2 broadcastable to (..., 1, 1)."""
    G = H @ W
    M = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device) + (G.mH @ G) / s2
    return G, M


def logdet_gradient(H: torch.Tensor, W: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """d log2 det(I + H W W^H H^H / s2) / dRe(W) + j d/dIm(W) = (2 / (ln2 s2)) H^H G M^{-1}
    (push-through: an S x S system), shapes as ``logdet_system``."""
    G, M = logdet_system(H, W, s2)
    return (2.0 / LN2) * (H.mH @ torch.linalg.solve(M, G.mH).mH) / s2


class BeamformingConfig(ProblemConfig):
    """``problem:`` of a beamforming experiment (the default problem)."""

    name: Literal["beamforming"] = "beamforming"
    n_streams: int = Field(1, ge=1)
    constraint: Literal["total", "per_antenna"] = "total"
    init: Literal["matched_filter", "random"] = "matched_filter"
    channel: ChannelConfig = ChannelConfig()


def _channel(**change) -> dict:
    return {"channel": change}


@PROBLEMS.register
class BeamformingProblem(Problem):
    """Single-user MIMO precoding.

    W: (B, n_tx, n_streams) complex64.  SE(W) = log2 det(I + H W W^H H^H / noise_var).

    Args:
        source: the ChannelSource training and evaluation draw from (its n_tx, n_rx and power).
        n_streams: number of data streams S (<= min(n_rx, n_tx)).
        constraint: "total" (||W||_F^2 <= P) or "per_antenna" (each row norm^2 <= P / n_tx).
        init: "matched_filter" (MRT to the strongest receive antennas, full power) or "random".
    """

    name = "beamforming"
    Config = BeamformingConfig
    sense = 1.0
    scalings = ("rayleigh", "trace")
    default_scaling = "rayleigh"
    score_key = "pct_of_optimum"
    metrics = {"pct_of_optimum": "100 x mean SE / mean SE of the optimum",
               "p5_pct": "5th percentile over channels of 100 x SE / SE of the optimum",
               "min_pct": "worst channel, % of its optimum", "se_mean": "mean SE, bit/s/Hz",
               "feasible": "every precoder inside the power constraint"}
    classical = ("power_iteration", "pgd_tuned", "lanczos")
    # every axis a deployment varies: channel model, transmit angular spread, antenna counts on both
    # sides, receive correlation, SNR (the robustness table of the benchmark runs all of them)
    sampling_keys = CHANNEL_SAMPLING_KEYS
    scenarios = {
        "nominal": ("nominal (the trained channel)", {}),
        "iid": ("i.i.d. Rayleigh", _channel(model="iid_rayleigh")),
        "umi": ("3GPP UMi (Sionna, 3.5 GHz)", _channel(model="umi")),
        "uma": ("3GPP UMa (Sionna, 3.5 GHz)", _channel(model="uma")),
        "cdl": ("3GPP CDL-C, 100 ns (Sionna)", _channel(model="cdl")),
        "as0": ("angular spread 0 deg (rank-one transmit correlation)", _channel(angular_spread_deg=0.0, tx_rho=None)),
        "as5": ("angular spread 5 deg", _channel(angular_spread_deg=5.0, tx_rho=None)),
        "as40": ("angular spread 40 deg", _channel(angular_spread_deg=40.0, tx_rho=None)),
        "as60": ("angular spread 60 deg", _channel(angular_spread_deg=60.0, tx_rho=None)),
        "ntx16": ("n_tx = 16", _channel(n_tx=16)),
        "ntx32": ("n_tx = 32", _channel(n_tx=32)),
        "ntx128": ("n_tx = 128", _channel(n_tx=128)),
        "ntx256": ("n_tx = 256", _channel(n_tx=256)),
        "nrx1": ("n_rx = 1 (MISO)", _channel(n_rx=1)),
        "nrx2": ("n_rx = 2", _channel(n_rx=2)),
        "nrx4": ("n_rx = 4", _channel(n_rx=4)),
        "nrx32": ("n_rx = 32", _channel(n_rx=32)),
        "rxcorr5": ("receive correlation rho_rx = 0.5", _channel(rx_rho=0.5)),
        "rxcorr9": ("receive correlation rho_rx = 0.9", _channel(rx_rho=0.9)),
        "lowsnr": ("SNR -10..10 dB", _channel(snr_db=[-10.0, 10.0])),
        "snr-10": ("SNR -10 dB", _channel(snr_db=[-10.0, -10.0])),
        "snr40": ("SNR 40 dB", _channel(snr_db=[40.0, 40.0])),
    }
    draws_channels = True
    # per-antenna power has no closed form: Nesterov-accelerated projected gradient from the
    # projected total-power optimum, each channel until its relative SE change per iteration is below
    # 1e-9 (at most 20000 iterations). The per-sample stop matters: with one stop for the whole batch,
    # the slowest channel kept all 2048 iterating for minutes; per sample, 2048 channels take ~2 s
    reference_solver = ReferenceSolver(extrapolation="nesterov", normalize="trace",
                                       params=(("step", 1.0), ("momentum", 0.5)), tol=1e-9, per_sample=True)
    inputs = "H (B, n_rx, n_tx) complex64, noise_var (B,) float32"
    outputs = "W (B, n_tx, n_streams) complex64 inside the power constraint"

    @classmethod
    def from_config(cls, cfg: BeamformingConfig) -> "BeamformingProblem":
        return cls(build_channel(cfg.channel), n_streams=cfg.n_streams, constraint=cfg.constraint, init=cfg.init)

    @classmethod
    def memory_estimate(cls, cfg: BeamformingConfig, batch: int) -> dict:
        ch = cfg.channel
        # the transmit correlation factor (n_tx x n_tx, float64 while it is computed), and per batch
        # H with the Gram matrices and iterates an unrolled step keeps for autograd (about 4 copies)
        return {"problem.channel.n_tx": 16 * ch.n_tx * ch.n_tx + 16 * ch.n_rx * ch.n_rx,
                "problem.channel.n_rx x n_tx x batch": 4 * 8 * batch * ch.n_rx * ch.n_tx}

    def __init__(self, source: ChannelSource, n_streams: int = 1, constraint: str = "total",
                 init: str = "matched_filter"):
        if constraint not in ("total", "per_antenna"):
            raise ConfigError(f"beamforming: constraint must be 'total' or 'per_antenna' (got {constraint!r})")
        if init not in ("matched_filter", "random"):
            raise ConfigError(f"beamforming: init must be 'matched_filter' or 'random' (got {init!r})")
        if not 1 <= n_streams <= min(source.n_tx, source.n_rx):
            raise ConfigError(f"beamforming: n_streams must be in [1, min(n_tx, n_rx)] = "
                              f"[1, {min(source.n_tx, source.n_rx)}] (got {n_streams})")
        self.source, self.n_streams, self.constraint, self.init_method = source, n_streams, constraint, init
        self.n_tx, self.n_rx, self.power = source.n_tx, source.n_rx, source.power

    def settings(self):
        return {"n_streams": self.n_streams, "constraint": self.constraint, "init": self.init_method}

    def signature(self) -> dict:
        return {"problem": self.name, "n_tx": self.n_tx, "n_rx": self.n_rx, "n_streams": self.n_streams,
                "constraint": self.constraint}

    # ---- instances -------------------------------------------------------------------------
    def sample(self, batch: int, seed, device="cpu") -> ChannelBatch:
        return self.source.sample(batch, seed, device)

    def dims(self, inst) -> dict:
        """The sizes of an instance: {"n_rx": .., "n_tx": ..}."""
        return {"n_rx": inst.H.shape[-2], "n_tx": inst.H.shape[-1]}

    def instance(self, H: torch.Tensor, noise_var: torch.Tensor) -> ChannelBatch:
        """Validated instance from H (B, n_rx, n_tx) complex and noise_var (B,) float: any n_rx and
        n_tx with min(n_rx, n_tx) >= n_streams (what a model's learned parameters fix is checked by
        the model, ``Unfolded.check_dims``)."""
        energy = check_channel(H, noise_var)
        if min(H.shape[-2:]) < self.n_streams:
            raise InputError(f"H is {H.shape[-2]} x {H.shape[-1]} (n_rx x n_tx): {self.n_streams} streams need "
                             f"min(n_rx, n_tx) >= {self.n_streams}")
        snr_db = torch.add(10.0 * math.log10(self.power), torch.log10(noise_var), alpha=-10.0)
        return ChannelBatch(H.to(torch.complex64), noise_var.float(), snr_db.float(), energy.float())

    def accept(self, batch: ChannelBatch) -> ChannelBatch:
        """A batch of an external channel source (recorded CSI, another model), validated."""
        return self.instance(batch.H, batch.noise_var)

    # ---- math --------------------------------------------------------------------------------
    def _gram_system(self, W, inst):
        s2 = inst.noise_var.view(-1, 1, 1)
        G, M = logdet_system(inst.H, W, s2)                              # (B, n_rx, S), (B, S, S)
        return G, M, s2

    conditioning = "log10 tr(G) tr(G^-1) / m^2, G the smaller Gram matrix of H"
    """What ``log_condition`` computes, recorded with a saved model that conditions on it (``artifacts``)."""

    def log_condition(self, inst) -> torch.Tensor:
        """How far the channel's rows are from orthogonal (``problems.base.log_condition``: log10 of
        tr(G) tr(G^-1) / m^2 for its Gram matrix G), (B,) float32: the second feature ``model.cond_knots``
        conditions the per-layer scalars on."""
        return log_condition(inst.H)

    def objective(self, W, inst) -> torch.Tensor:
        """SE in bit/s/Hz, (B,) float32. Uses the S x S determinant (Sylvester), not n_rx x n_rx."""
        if W.shape[-1] == 1:
            q = (inst.H @ W).abs().square().sum((-2, -1))
            return torch.log2(1.0 + q / inst.noise_var)
        _, M, _ = self._gram_system(W, inst)
        return torch.linalg.slogdet(M).logabsdet / LN2

    def gradient(self, W, inst, operator=None) -> torch.Tensor:
        """dSE/dRe(W) + j dSE/dIm(W), (B, n_tx, S) complex64.

        grad = (2 / (ln2 noise_var)) H^H (I + H W W^H H^H / noise_var)^{-1} H W
             = (2 / (ln2 noise_var)) H^H G (I_S + G^H G / noise_var)^{-1},   G = H W,
        by the matrix-inversion (push-through) identity: only an S x S system, a division for S = 1.
        """
        G, M, s2 = self._gram_system(W, inst)
        if W.shape[-1] == 1:
            X = G / M
        else:
            X = torch.linalg.solve(M, G.mH).mH                           # G M^{-1}, M Hermitian
        return (2.0 / LN2) * (inst.H.mH @ X) / s2

    def curvature(self, W, inst, mode: str = "rayleigh") -> torch.Tensor:
        """Curvature scale L(W) that the gradient is divided by, (B,) float32.

        For one stream, SE(w) = log2(1 + w^H A w / s2) with A = H^H H has the Hessian
        (2/ln2) [A / (s2 + q) - A w w^H A / (s2 + q)^2], q = ||H w||^2. The second term is positive
        semidefinite, so the curvature is at most (2/ln2) lambda_max(A) / (s2 + q). Both modes keep
        the (s2 + q) factor (noise variance included) and the full complex Gram matrix:

        trace:    lambda_max(A) <= tr(A) = ||H||_F^2, a global bound; grad / L = A w / ||H||_F^2.
        rayleigh: lambda_max(A) is replaced by the Rayleigh quotient rho = ||H w||^2 / ||w||^2, the
                  curvature of w^H A w along the current iterate (rho <= lambda_max, and rho ->
                  lambda_max as w converges); grad / L = A w / rho. Step sizes are then relative to
                  the current estimate of the top eigenvalue, which makes learned steps transfer
                  across channel models, antenna counts and SNR.
        Neither needs an eigenvalue. For several streams q and rho use the weakest stream
        (smallest eigenvalue of G^H G, G = H W).
        """
        G = inst.H @ W
        if W.shape[-1] == 1:
            q = G.abs().square().sum((-2, -1))
            w2 = W.abs().square().sum((-2, -1))
        else:
            q = torch.linalg.eigvalsh(G.mH @ G)[..., 0]
            w2 = torch.linalg.eigvalsh(W.mH @ W)[..., -1]
        if mode == "trace":
            scale = inst.H.abs().square().sum((-2, -1))
        elif mode == "rayleigh":
            scale = q / w2.clamp_min(1e-30)
        else:
            raise ConfigError(f"beamforming: unknown gradient scaling {mode!r}; allowed: {', '.join(self.scalings)}")
        return (2.0 / LN2) * scale.clamp_min(1e-30) / (inst.noise_var + q)

    def prox(self, Z, inst, threshold=None) -> torch.Tensor:
        """Euclidean projection onto the feasible set (a scaling; ``threshold`` is unused)."""
        if self.constraint == "total":
            norm = torch.linalg.vector_norm(Z, dim=(-2, -1), keepdim=True)
            return Z * torch.clamp(math.sqrt(self.power) / norm.clamp_min(1e-30), max=1.0)
        row = torch.linalg.vector_norm(Z, dim=-1, keepdim=True)
        return Z * torch.clamp(math.sqrt(self.power / Z.shape[-2]) / row.clamp_min(1e-30), max=1.0)

    def feasible(self, W, inst, rtol: float = 1e-5) -> torch.Tensor:
        if self.constraint == "total":
            return W.abs().square().sum((-2, -1)) <= self.power * (1 + rtol)
        return (W.abs().square().sum(-1) <= self.power / W.shape[-2] * (1 + rtol)).all(-1)

    def init(self, inst, method: Optional[str] = None, seed=0) -> torch.Tensor:
        """Initial precoder, feasible, at full power. (B, n_tx, S) complex64.

        matched_filter: stream s is the conjugate of the s-th strongest row of H (MRT to that
        receive antenna); random: i.i.d. CN(0, 1) entries (drawn from ``seed``) scaled to full power.
        """
        method = method or self.init_method
        H = inst.H
        n_tx = H.shape[-1]
        if method == "matched_filter":
            if H.shape[-2] == self.n_streams:
                W = H.mH
            else:
                # squared row norms: those the input check measured, else one fused reduction of the
                # real view (abs2(H).sum(-1) writes a copy of H)
                energy = getattr(inst, "row_energy", None)
                if energy is None or energy.shape != H.shape[:2]:
                    energy = torch.linalg.vector_norm(torch.view_as_real(H.resolve_conj()), dim=(-2, -1)).square()
                if self.n_streams == 1:                  # the row's norm is known: scale, no second pass
                    top, strongest = energy.max(dim=-1)                                    # (B,)
                    rows = H[torch.arange(H.shape[0], device=H.device), strongest]         # (B, n_tx)
                    W = scale_rows(rows.conj(), math.sqrt(self.power) * top.clamp_min(torch.finfo(top.dtype).tiny).rsqrt()).unsqueeze(-1)
                    return W if self.constraint == "total" else self.prox(W, inst)
                strongest = energy.topk(self.n_streams, dim=-1).indices                    # (B, S)
                rows = H.gather(1, strongest.unsqueeze(-1).expand(-1, -1, n_tx))          # (B, S, n_tx)
                W = rows.mH
        elif method == "random":
            g = as_generator(seed)
            re_im = torch.randn(H.shape[0], n_tx, self.n_streams, 2, generator=g)
            W = torch.view_as_complex(re_im).to(H.device)
        else:
            raise ConfigError(f"beamforming: unknown init {method!r}; allowed: matched_filter, random")
        W = W * (self.power / frob2(W).clamp_min(1e-30)).sqrt().view(-1, 1, 1)
        return W if self.constraint == "total" else self.prox(W, inst)

    def spectrum_edge(self, mode: str = "rayleigh") -> float:
        """Where the unwanted part of the scaled Gram spectrum ends, to place Chebyshev step
        initialisations (training moves them). trace: eigenvalues of A / ||H||_F^2 sum to 1 over
        rank min(n_rx, n_tx), so 2 / rank; rayleigh: eigenvalues relative to lambda_max, and
        lambda_2 / lambda_1 is below 0.9 for the correlated and i.i.d. models of the benchmark."""
        return 2.0 / min(self.n_rx, self.n_tx) if mode == "trace" else 0.9

    # ---- reference -----------------------------------------------------------------------------
    def optimum_total_power(self, inst, dtype=torch.complex128) -> torch.Tensor:
        """Closed-form optimum under the total-power constraint, (B, n_tx, S) complex64.

        Eigenmodes of H^H H with water-filling. When n_rx < n_tx the eigenvectors come from the
        n_rx x n_rx dual H H^H (v_i = H^H u_i / sqrt(lambda_i)). ``dtype`` is the precision of the
        eigendecomposition: complex128 for references, complex64 for a deployment-speed solution.
        """
        H = inst.H.to(dtype)
        S = self.n_streams
        if H.shape[-2] < H.shape[-1]:
            lam, U = torch.linalg.eigh(H @ H.mH)
            lam, U = lam.flip(-1)[..., :S], U.flip(-1)[..., :S]
            V = H.mH @ U / lam.clamp_min(1e-30).sqrt().unsqueeze(-2)
        else:
            lam, V = torch.linalg.eigh(H.mH @ H)
            lam, V = lam.flip(-1)[..., :S], V.flip(-1)[..., :S]
        p = water_filling(lam / inst.noise_var.to(lam.dtype).unsqueeze(-1), self.power)
        return (V * p.sqrt().unsqueeze(-2)).to(torch.complex64)

    def closed_form(self, inst) -> Optional[torch.Tensor]:
        """The optimum where a formula gives it: total power (eigenmodes + water-filling)."""
        return self.optimum_total_power(inst) if self.constraint == "total" else None

    def reference_init(self, inst) -> torch.Tensor:
        """Start of the iterative per-antenna solve: the projected total-power optimum."""
        return self.prox(self.optimum_total_power(inst), inst)

    def loss_scale(self, inst) -> torch.Tensor:
        """Per-sample scale of the relative loss: the SE of the total-power optimum (closed form,
        an upper bound for the per-antenna problem too), (B,)."""
        with torch.no_grad():
            return self.objective(self.optimum_total_power(inst), inst)

    def supervised_loss(self, W, inst, W_ref) -> torch.Tensor:
        """Phase-invariant subspace distance 1 - ||W_ref^H W||_F^2 / (||W||_F^2 ||W_ref||_F^2), (B,)."""
        num = (W_ref.mH @ W).abs().square().sum((-2, -1))
        den = W.abs().square().sum((-2, -1)) * W_ref.abs().square().sum((-2, -1))
        return 1.0 - num / den.clamp_min(1e-30)

    def summarize(self, W, inst, W_ref) -> dict:
        """pct_of_optimum = 100 mean SE / mean SE of ``W_ref``; p5_pct / min_pct over channels of
        100 SE / SE_ref; se_mean; feasible (every sample within P (1 + 1e-5))."""
        se, se_ref = self.objective(W, inst).double(), self.objective(W_ref, inst).double()
        ratio = 100.0 * se / se_ref
        return {"pct_of_optimum": float(100.0 * se.mean() / se_ref.mean()),
                "p5_pct": float(torch.quantile(ratio, 0.05)), "min_pct": float(ratio.min()),
                "se_mean": float(se.mean()), "feasible": bool(self.feasible(W, inst).all())}

    def describe(self) -> dict:
        return {"problem": self.name, **self.settings(), "channel": self.source.describe()}
