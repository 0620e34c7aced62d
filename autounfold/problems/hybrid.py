"""Wideband hybrid precoding: one analog precoder of unit-modulus phase shifters shared by all bands,
a digital precoder per band, maximising the rate averaged over the bands (the survey's eq. 11,
after Lavi and Shlezinger, IEEE Trans. Commun. 2023). No closed form; the classical solver is
projected gradient ascent alternating an analog and a digital step (eq. 12, ``algorithms.hybrid_pga``).

Shapes (B samples, NB bands, N users = streams, M antennas, L RF chains):
    H     (B, NB, N, M) complex64   row n of H[:, b] is user n's channel on band b
    W_a   (B, M, L)     complex64   |W_a[m, l]| = 1
    W_d   (B, NB, L, N) complex64   ||W_a W_d[:, b]||_F^2 = P on every band
    F     (B, NB, M, N) complex64   F_b = W_a W_d,b, the precoder the antennas radiate

An iterate of the platform's generic tools (solvers, training, reference) is one tensor: W_a and W_d
flattened and concatenated, (B, M L + NB L N) complex64 (``pack`` / ``unpack``). The fully-digital
bound is a precoder F (B, NB, M, N); ``objective`` takes either.

Channels (``problem.channel.model``, ``channels/wideband.py``): ``clustered`` multipath, ``iid``, or the 3GPP
TR 38.901 models ``umi`` / ``uma`` / ``cdl`` / ``tdl`` through Sionna (multi-user downlink, the bands are
subcarriers of one realisation spread over ``channel.bandwidth_mhz``). Every model has E|H_b[n, m]|^2 = 1,
so the SNR is P / noise_var.
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Tuple

import torch
from pydantic import Field, model_validator

from ..channels.base import ChannelBatch
from ..channels.wideband import WIDEBAND_SAMPLING_KEYS, TR38901_MODELS, WidebandConfig, WidebandSource, band_subcarriers, check_wideband
from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from ..seeding import as_generator
from .base import Problem, ProblemConfig, ReferenceSolver, abs2, frob2, norm_ratio
from .beamforming import logdet_gradient, logdet_system, water_filling
from .mu_miso import interference, sum_rate_gradient

LN2 = math.log(2.0)
OBJECTIVES = ("logdet", "sum_rate")
INITS = ("svd", "subspace", "random")
SUBSPACE_ITERATIONS = 20
"""Alternating projections of the ``subspace`` start: from the svd start, W_a <- unit-modulus(P_S W_a)
with P_S the projector onto the top-L eigenvectors of sum_b H_b^H H_b. Each costs one (M x M)(M x L)
product per sample. At 12 antennas and 10 RF chains the residual ||W_a - P_S W_a||^2 / ||W_a||^2 after 20
is below 1e-3 on every channel of ``tests/test_hybrid.py``'s draw (the bound that test asserts)."""


class HybridConfig(ProblemConfig):
    """``problem:`` of a hybrid precoding experiment (``name: hybrid_precoding``)."""

    name: Literal["hybrid_precoding"] = "hybrid_precoding"
    n_antennas: int = Field(12, ge=1, le=1024)
    n_rf: int = Field(10, ge=1)
    n_bands: int = Field(8, ge=1, le=256)
    n_users: int = Field(6, ge=1)
    objective: Literal["logdet", "sum_rate"] = "logdet"
    init: Literal["svd", "subspace", "random"] = "svd"
    channel: WidebandConfig = WidebandConfig()

    @model_validator(mode="after")
    def _sizes(self):
        if not self.n_users <= self.n_rf <= self.n_antennas:
            raise ValueError(f"need n_users <= n_rf <= n_antennas (one RF chain per stream at least, no more chains "
                             f"than antennas); got n_users={self.n_users}, n_rf={self.n_rf}, n_antennas={self.n_antennas}")
        ch = self.channel
        if ch.model in TR38901_MODELS:
            n_sc = band_subcarriers(ch.bandwidth_mhz, ch.subcarrier_spacing_khz)
            if self.n_bands > n_sc:
                raise ValueError(f"n_bands={self.n_bands} exceeds the {n_sc} subcarriers of channel.bandwidth_mhz="
                                 f"{ch.bandwidth_mhz} at channel.subcarrier_spacing_khz={ch.subcarrier_spacing_khz} "
                                 f"({ch.model}: one subcarrier per band)")
        return self


def _sizes(M=None, L=None, NB=None, **channel) -> dict:
    out = {"channel": dict(channel)} if channel else {}
    for key, v in (("n_antennas", M), ("n_rf", L), ("n_bands", NB)):
        if v is not None:
            out[key] = v
    return out


def project_analog(Z: torch.Tensor) -> torch.Tensor:
    """The nearest unit-modulus matrix: Z / |Z| entrywise (an entry that is 0 becomes 1)."""
    mag = abs2(Z).sqrt()
    return torch.where(mag > 1e-30, Z / mag.clamp_min(1e-30), torch.ones_like(Z))


def stacked_power(W_a: torch.Tensor, D: torch.Tensor, n_bands: int) -> torch.Tensor:
    """||W_a W_d,b||_F^2 per sample and band, (B, NB), from the stacked D (B, L, NB N)."""
    return abs2(W_a @ D).view(D.shape[0], W_a.shape[1], n_bands, -1).sum((1, 3))


def project_stacked(W_a: torch.Tensor, D: torch.Tensor, n_bands: int, power: float) -> torch.Tensor:
    """Each band's digital precoder scaled to full power, ||W_a W_d,b||_F^2 = P, on the stacked
    D = [W_d,1 ... W_d,NB] (B, L, NB N). The rate grows with the scale of W_d,b, so the optimum lies
    on the boundary: this is the projection onto it along the ray (the survey's Pi_d)."""
    B, L, _ = D.shape
    p = stacked_power(W_a, D, n_bands).clamp_min(1e-30)
    return (D.view(B, L, n_bands, -1) * (power / p).sqrt().view(B, 1, n_bands, 1)).view(B, L, -1)


@PROBLEMS.register
class HybridPrecodingProblem(Problem):
    """Wideband hybrid precoding (module docstring for the shapes).

    Objectives (``objective``), both averaged over the bands, in bit/s/Hz:
        logdet:   R = 1/NB sum_b log2 det(I + H_b F_b F_b^H H_b^H / s2)   (the survey's eq. 11)
        sum_rate: R = 1/NB sum_b sum_n log2(1 + |h_bn^H f_bn|^2 / (sum_{j != n} |h_bn^H f_bj|^2 + s2))
    The score is the % of the fully-digital bound: per band the best precoder with M chains (logdet:
    the channel's right singular vectors with water-filling, exact). For sum_rate no bound is
    computable; the reference is fully-digital WMMSE per band from RZF to convergence, a local
    optimum, which a hybrid precoder can exceed on some channels.

    Args:
        source: the multi-band channel source; n_rf: L; objective; init: "svd" (phases of the top-L
            eigenvectors of sum_b H_b^H H_b), "subspace" (from there, alternating projections onto
            their span and onto unit modulus, ``SUBSPACE_ITERATIONS``: where L is close to M a
            unit-modulus W_a spans that subspace exactly) or "random" phases; either way the
            digital precoder is the best one for that analog precoder (``digital_given_analog``).
    """

    name = "hybrid_precoding"
    Config = HybridConfig
    sense = 1.0
    scalings = ("norm",)
    default_scaling = "norm"
    score_key = "pct_of_bound"
    metrics = {"pct_of_bound": "100 x mean rate / mean rate of the fully-digital bound (per band, M chains; for "
                               "sum_rate a fully-digital WMMSE reference, a local optimum)",
               "p5_pct": "5th percentile over channels of 100 x rate / bound", "min_pct": "worst channel, % of its bound",
               "rate_mean": "mean rate over bands, bit/s/Hz", "feasible": "unit-modulus analog and per-band power P"}
    classical = ("hybrid_pga_tuned", "altmin", "two_stage", "subspace")
    sampling_keys = WIDEBAND_SAMPLING_KEYS
    scenarios = {
        "nominal": ("nominal (the trained configuration)", {}),
        "iid": ("i.i.d. Rayleigh, independent bands", _sizes(model="iid")),
        "M8": ("8 antennas, 6 RF chains", _sizes(8, 6)),
        "M16": ("16 antennas", _sizes(16)),
        "M32": ("32 antennas", _sizes(32)),
        "B4": ("4 bands", _sizes(NB=4)),
        "B16": ("16 bands", _sizes(NB=16)),
        "snr0": ("SNR 0 dB", _sizes(snr_db=[0.0, 0.0])),
        "snr10": ("SNR 10 dB", _sizes(snr_db=[10.0, 10.0])),
        "snr20": ("SNR 20 dB", _sizes(snr_db=[20.0, 20.0])),
        "snr30": ("SNR 30 dB", _sizes(snr_db=[30.0, 30.0])),
        "as30": ("angular spread 30 deg", _sizes(angular_spread_deg=30.0)),
        "delay16": ("delays up to 16 samples (bands less alike)", _sizes(max_delay=16.0)),
        # 3GPP TR 38.901 through Sionna: multi-user downlink, the bands (spread over channel.bandwidth_mhz,
        # 20 MHz unless set) are subcarriers of one realisation per user
        "umi": ("3GPP UMi (Sionna, 3.5 GHz), users at their own positions", _sizes(model="umi")),
        "uma": ("3GPP UMa (Sionna, 3.5 GHz), users at their own positions", _sizes(model="uma")),
        "cdl": ("3GPP CDL-C, 100 ns (Sionna)", _sizes(model="cdl")),
        "tdl": ("3GPP TDL-C, 100 ns (Sionna), spatially i.i.d. antennas", _sizes(model="tdl")),
    }
    draws_channels = False            # its H is multi-band: no Parquet CSI (csi write), no narrowband sources;
                                      # its own channel section serves clustered, iid and umi / uma / cdl / tdl
    monitored = True                  # the monitor watches sum_b,n h_bn h_bn^H and drifts the clustered spread
    inputs = "H (B, n_bands, n_users, n_antennas) complex64, noise_var (B,) float32"
    outputs = ("(W_a, W_d): W_a (B, n_antennas, n_rf) complex64 of unit modulus, W_d (B, n_bands, n_rf, n_users) "
               "complex64 with ||W_a W_d[:, b]||_F^2 = P on every band")

    @classmethod
    def from_config(cls, cfg: HybridConfig) -> "HybridPrecodingProblem":
        return cls(WidebandSource(cfg.n_antennas, cfg.n_users, cfg.n_bands, cfg.channel), cfg.n_rf,
                   cfg.objective, cfg.init)

    @classmethod
    def memory_estimate(cls, cfg: HybridConfig, batch: int) -> dict:
        M, NB, N, L = cfg.n_antennas, cfg.n_bands, cfg.n_users, cfg.n_rf
        ch = cfg.channel
        return {"problem.n_antennas x n_bands x batch": 8 * 24 * batch * NB * M * max(N, L),
                "problem.channel.n_clusters x n_rays x batch": 16 * 4 * batch * N * ch.n_clusters * ch.n_rays * M}

    def __init__(self, source: WidebandSource, n_rf: int, objective: str = "logdet", init: str = "svd"):
        if objective not in OBJECTIVES:
            raise ConfigError(f"hybrid_precoding: objective must be one of {', '.join(OBJECTIVES)} (got {objective!r})")
        if init not in INITS:
            raise ConfigError(f"hybrid_precoding: init must be one of {', '.join(INITS)} (got {init!r})")
        if not source.n_users <= n_rf <= source.n_antennas:
            raise ConfigError(f"hybrid_precoding: need n_users <= n_rf <= n_antennas (got {source.n_users}, {n_rf}, "
                              f"{source.n_antennas})")
        self.source, self.n_rf, self.objective_kind, self.init_method = source, int(n_rf), objective, init
        self.n_antennas, self.n_users, self.n_bands = source.n_antennas, source.n_users, source.n_bands
        self.power = source.power
        self._cache = {}
        if objective == "sum_rate":
            # WMMSE per band on the fully-digital precoder, from RZF, each channel until its rate
            # changes by less than 1e-6 (relative) in one iteration, at most 1000 iterations
            self.reference_solver = ReferenceSolver(algorithm="fd_wmmse", params=(), tol=1e-6,
                                                    max_iterations=1000, per_sample=True)

    def settings(self):
        return {"n_antennas": self.n_antennas, "n_rf": self.n_rf, "n_bands": self.n_bands, "n_users": self.n_users,
                "objective": self.objective_kind, "init": self.init_method}

    def describe(self) -> dict:
        return {"problem": self.name, **self.settings(), "channel": self.source.describe()}

    # ---- instances -------------------------------------------------------------------------
    def sample(self, batch: int, seed, device="cpu") -> ChannelBatch:
        return self.source.sample(batch, seed, device)

    def instance(self, H: torch.Tensor, noise_var: torch.Tensor) -> ChannelBatch:
        """Validated instance from H (B, NB, N, M) complex and noise_var (B,) float. Any NB, N and M
        with N <= n_rf <= M: the model's RF chain count is its own."""
        check_wideband(H, noise_var)
        _, NB, N, M = H.shape
        if not N <= self.n_rf <= M:
            raise InputError(f"H has {N} users and {M} antennas, but this model has n_rf={self.n_rf} RF chains "
                             "(need n_users <= n_rf <= n_antennas)")
        snr_db = 10.0 * torch.log10(self.power / noise_var)
        return ChannelBatch(H.to(torch.complex64), noise_var.float(), snr_db.float())

    def drift_source(self, config: HybridConfig, angular_spread_deg: float) -> WidebandSource:
        """This problem's source with the clustered model's angular spread changed (a 3GPP model draws
        its own angles: ConfigError)."""
        if config.channel.model in TR38901_MODELS:
            raise ConfigError(f"synthetic angular_spread drift changes the clustered model's spread; problem.channel."
                              f"model={config.channel.model} draws its own angles and has no angular_spread_deg")
        ch = config.channel.model_copy(update={"angular_spread_deg": angular_spread_deg})
        return WidebandSource(config.n_antennas, config.n_users, config.n_bands, ch)

    def estimate_angular_spread(self, R: torch.Tensor, grid_step: float = 2.5) -> float:
        """The clustered model's angular spread (degrees) whose transmit covariance is nearest to R
        (M x M, complex) in Frobenius norm, over a grid of ``grid_step`` degrees (each grid point's
        covariance from 512 seeded draws, computed once per problem). The monitor aims a re-search
        with it; the exponential-model estimate does not fit this model (10 deg reads as over 40,
        ``test_monitor_sees_a_change_of_the_cluster_angular_spread``)."""
        if self.source.cfg.model != "clustered":
            return float(self.source.cfg.angular_spread_deg)
        key = ("spread_grid", grid_step, R.shape[-1])
        if key not in self._cache:
            grid = [grid_step * i for i in range(int(90 / grid_step) + 1)]
            covs = []
            for a in grid:
                ch = self.source.cfg.model_copy(update={"angular_spread_deg": a})
                H = WidebandSource(R.shape[-1], self.n_users, self.n_bands, ch).sample(512, 20261202).H
                rows = H.reshape(-1, H.shape[-1]).to(torch.complex128)
                covs.append(rows.mH @ rows / rows.shape[0])
            self._cache[key] = (grid, torch.stack(covs))
        grid, covs = self._cache[key]
        dist = abs2(covs.to(R.device) - R.to(torch.complex128)).sum((-2, -1))
        return float(grid[int(dist.argmin())])

    def real_interface(self) -> dict:
        """The real-valued interface of ``autounfold export`` and of a registered version's MLflow
        signature: (B, NB, N, M, 2) and (B,) in; W_a (B, M, L, 2) and W_d (B, NB, L, N, 2) out."""
        M, L, NB, N = self.n_antennas, self.n_rf, self.n_bands, self.n_users
        return {"inputs": {"H_real": ["B", NB, N, M, 2], "noise_var": ["B"]},
                "output": {"W_a_real": ["B", M, L, 2], "W_d_real": ["B", NB, L, N, 2]}, "dtype": "float32"}

    def accept(self, batch: ChannelBatch) -> ChannelBatch:
        return self.instance(batch.H, batch.noise_var)

    def dims(self, inst) -> dict:
        _, NB, N, M = inst.H.shape
        return {"n_bands": NB, "n_users": N, "n_antennas": M}

    # ---- the packed iterate ----------------------------------------------------------------
    def pack(self, W_a: torch.Tensor, W_d: torch.Tensor) -> torch.Tensor:
        """(B, M L + L NB N): W_a and W_d flattened side by side, W_d in (L, NB, N) order (so that all
        bands' digital precoders form one L x NB N matrix, ``unpack_stacked``)."""
        return self.pack_stacked(W_a, W_d.permute(0, 2, 1, 3).reshape(W_d.shape[0], W_d.shape[2], -1))

    def pack_stacked(self, W_a: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """``pack`` from W_a (B, M, L) and the stacked digital precoders D = [W_d,1 ... W_d,NB] (B, L, NB N)."""
        return torch.cat([W_a.reshape(W_a.shape[0], -1), D.reshape(D.shape[0], -1)], -1)

    def unpack_stacked(self, x: torch.Tensor, inst) -> Tuple[torch.Tensor, torch.Tensor]:
        """(W_a (B, M, L), D (B, L, NB N)) of a packed iterate, sizes from the instance."""
        _, NB, N, M = inst.H.shape
        L = self.n_rf
        if x.shape[-1] != M * L + NB * L * N:
            raise InputError(f"a packed hybrid precoder for M={M}, L={L}, NB={NB}, N={N} has {M * L + NB * L * N} "
                             f"entries, got {x.shape[-1]}")
        return x[:, :M * L].reshape(-1, M, L), x[:, M * L:].reshape(-1, L, NB * N)

    def unpack(self, x: torch.Tensor, inst) -> Tuple[torch.Tensor, torch.Tensor]:
        """(W_a (B, M, L), W_d (B, NB, L, N)) of a packed iterate, sizes from the instance."""
        W_a, D = self.unpack_stacked(x, inst)
        _, NB, N, _ = inst.H.shape
        return W_a, D.view(D.shape[0], self.n_rf, NB, N).transpose(1, 2)

    def output(self, x: torch.Tensor, inst):
        """What a model returns: (W_a, W_d)."""
        return self.unpack(x, inst)

    def precoders(self, x: torch.Tensor, inst) -> torch.Tensor:
        """F (B, NB, M, N): the radiated precoder per band, W_a W_d,b (or x itself when x is one)."""
        if x.dim() == 4:
            return x
        W_a, D = self.unpack_stacked(x, inst)
        return self.stacked_precoders(W_a, D, inst)

    @staticmethod
    def stacked_precoders(W_a: torch.Tensor, D: torch.Tensor, inst) -> torch.Tensor:
        """F (B, NB, M, N) from W_a (B, M, L) and D (B, L, NB N), one product for all bands."""
        _, NB, N, M = inst.H.shape
        return (W_a @ D).view(-1, M, NB, N).transpose(1, 2)

    @staticmethod
    def stack(G: torch.Tensor) -> torch.Tensor:
        """(B, NB, M, N) -> (B, M, NB N): the bands side by side."""
        B, NB, M, N = G.shape
        return G.transpose(1, 2).reshape(B, M, NB * N)

    # ---- math --------------------------------------------------------------------------------
    @staticmethod
    def per_band(inst):
        """The bands as a batch of narrowband channels: H (B NB, N, M) and noise_var (B NB,)."""
        B, NB, N, M = inst.H.shape
        return inst.H.reshape(B * NB, N, M), inst.noise_var.repeat_interleave(NB)

    def rate(self, F: torch.Tensor, inst) -> torch.Tensor:
        """The objective of fully-formed precoders F (B, NB, M, N), (B,) float32."""
        H, s2 = inst.H, inst.noise_var.view(-1, 1, 1, 1)
        if self.objective_kind == "logdet":
            _, M = logdet_system(H, F, s2)                                          # (B, NB, N, N)
            return torch.linalg.slogdet(M).logabsdet.mean(-1) / LN2
        Hf, s2f = self.per_band(inst)
        B, NB = H.shape[:2]
        _, T, I = interference(Hf, F.reshape(B * NB, *F.shape[2:]), s2f)
        return torch.log2(T / I).sum(-1).view(B, NB).mean(-1)

    def rate_gradient(self, F: torch.Tensor, inst) -> torch.Tensor:
        """dR/dRe(F) + j dR/dIm(F), (B, NB, M, N). logdet: the single-user MIMO gradient of each band
        (``beamforming.logdet_gradient``, 2 / (ln2 s2) H_b^H H_b F_b (I + F_b^H H_b^H H_b F_b / s2)^{-1})
        / NB; sum_rate: the MU-MISO gradient per band / NB."""
        H = inst.H
        B, NB = H.shape[:2]
        if self.objective_kind == "logdet":
            return logdet_gradient(H, F, inst.noise_var.view(-1, 1, 1, 1)) / NB
        Hf, s2f = self.per_band(inst)
        g = sum_rate_gradient(Hf, F.reshape(B * NB, *F.shape[2:]), s2f, 1.0)
        return g.view(B, NB, *g.shape[1:]) / NB

    def objective(self, x: torch.Tensor, inst) -> torch.Tensor:
        """The rate (bit/s/Hz, averaged over bands), (B,) float32, of a packed hybrid iterate or of a
        fully-digital precoder F (B, NB, M, N)."""
        return self.rate(self.precoders(x, inst), inst)

    def gradient(self, x: torch.Tensor, inst, operator=None) -> torch.Tensor:
        """Packed (dR/dW_a, dR/dW_d) in the real-gradient-in-complex-form convention:
        dR/dW_a = sum_b G_b W_d,b^H and dR/dW_d,b = W_a^H G_b, G_b = ``rate_gradient`` of F_b."""
        W_a, D = self.unpack_stacked(x, inst)
        G = self.stack(self.rate_gradient(self.stacked_precoders(W_a, D, inst), inst))
        return self.pack_stacked(G @ D.mH, W_a.mH @ G)

    def curvature(self, x, inst, mode: str = "norm"):
        """For the generic projected gradient (layers ``step``, ``momentum``: one joint step on the
        packed iterate): ||grad|| / ||x||, (B,). The ``hybrid_pga`` rule scales each block itself."""
        return self.scaled_direction(x, inst, mode)[1]

    def scaled_direction(self, x, inst, mode, operator=None):
        g = self.gradient(x, inst)
        if not mode:
            return g, None
        if mode != "norm":
            raise ConfigError(f"hybrid_precoding: unknown gradient scaling {mode!r}; allowed: {', '.join(self.scalings)}")
        return g, norm_ratio(g, x, -1)

    def prox(self, z: torch.Tensor, inst, threshold=None) -> torch.Tensor:
        """Unit modulus for the analog part, then each band's digital part scaled to power P."""
        Z_a, D = self.unpack_stacked(z, inst)
        W_a = project_analog(Z_a)
        return self.pack_stacked(W_a, project_stacked(W_a, D, inst.H.shape[1], self.power))

    def feasible(self, x: torch.Tensor, inst, rtol: float = 1e-4) -> torch.Tensor:
        """(B,) bool: every analog entry of modulus 1 and every band at power <= P (1 + rtol)."""
        W_a, D = self.unpack_stacked(x, inst)
        unit = ((abs2(W_a).sqrt() - 1.0).abs() <= rtol).flatten(1).all(-1)
        return unit & (stacked_power(W_a, D, inst.H.shape[1]) <= self.power * (1 + rtol)).all(-1)

    # ---- starts, baselines' building blocks -------------------------------------------------
    def digital_given_analog(self, W_a: torch.Tensor, inst) -> torch.Tensor:
        """The best digital precoder per band for a fixed analog one, (B, NB, L, N).

        With W_a = Q R (thin QR), ||W_a W_d||_F = ||R W_d||_F, so band b is a fully-digital problem
        on the effective channel H_b Q (N x L) with X = R W_d: logdet: its right singular vectors
        with water-filling (exact); sum_rate: regularised zero forcing (K s2 / P) at full power.
        W_d = R^{-1} X."""
        D = self.digital_given_analog_stacked(W_a, inst)
        _, NB, N, _ = inst.H.shape
        return D.view(D.shape[0], self.n_rf, NB, N).transpose(1, 2)

    def digital_given_analog_stacked(self, W_a: torch.Tensor, inst) -> torch.Tensor:
        """``digital_given_analog`` with the bands side by side, D (B, L, NB N): one product with
        all bands' channels and one triangular solve per sample."""
        B, NB, N, M = inst.H.shape
        Q, R = torch.linalg.qr(W_a)
        Heff = (inst.H.reshape(B, NB * N, M) @ Q).view(B, NB, N, -1)              # (B, NB, N, L)
        X = self._fully_digital(Heff, inst.noise_var)                              # (B, NB, L, N)
        return torch.linalg.solve_triangular(R, self.stack(X), upper=True)

    def _fully_digital(self, H: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        """Per band the best (logdet, exact) or RZF (sum_rate) precoder with ||X_b||_F^2 = P for
        H (B, NB, N, n), n >= N -> X (B, NB, n, N).

        logdet: from the N x N Gram matrix H H^H = U diag(s^2) U^H (a small eigendecomposition, much
        cheaper than the SVD of H on a CPU), the right singular vectors are H^H U / s, so with the
        water-filling powers p, X = H^H U diag(sqrt(p) / s); a mode with s^2 below 1e-12 of the
        largest gets no power."""
        B, NB, N, n = H.shape
        G = H @ H.mH                                                                # (B, NB, N, N)
        if self.objective_kind == "logdet":
            lam, U = torch.linalg.eigh(G)
            lam, U = lam.flip(-1).clamp_min(0.0), U.flip(-1)                       # descending
            gains = lam.double() / noise_var.double().view(-1, 1, 1)
            p = water_filling(gains.reshape(B * NB, N), self.power).view_as(gains)
            live = lam > 1e-12 * lam[..., :1].clamp_min(1e-30)
            coef = torch.where(live, (p / lam.double().clamp_min(1e-300)).sqrt().to(lam.dtype), torch.zeros_like(lam))
            return H.mH @ (U * coef.unsqueeze(-2).to(U.dtype))
        eye = torch.eye(N, dtype=G.dtype, device=G.device)
        load = (N * noise_var / self.power).view(-1, 1, 1, 1)
        X = H.mH @ torch.linalg.solve(G + load * eye, eye.expand_as(G))
        return X * (self.power / frob2(X.reshape(B * NB, n, N)).view(B, NB, 1, 1).clamp_min(1e-30)).sqrt()

    def fully_digital(self, inst) -> torch.Tensor:
        """The per-band fully-digital precoder F (B, NB, M, N) with ||F_b||_F^2 = P: the exact bound
        for logdet, RZF for sum_rate (where the bound is WMMSE from it, ``reference_solver``)."""
        return self._fully_digital(inst.H, inst.noise_var)

    def analog_start(self, inst, method: Optional[str] = None, seed=0) -> torch.Tensor:
        """W_a (B, M, L): "svd" the phases of the top-L eigenvectors U of sum_b H_b^H H_b;
        "subspace" from there ``SUBSPACE_ITERATIONS`` times W_a <- unit-modulus(U U^H W_a), which
        converges to a unit-modulus basis of span(U) where one exists (L near M) and otherwise stops
        at a unit-modulus matrix near it; "random" uniform phases (seeded; the same matrix for every
        sample)."""
        method = method or self.init_method
        B, NB, N, M = inst.H.shape
        if method in ("svd", "subspace"):
            C = (inst.H.mH @ inst.H).sum(1)                                        # (B, M, M)
            _, U = torch.linalg.eigh(C)
            U = U[..., -self.n_rf:].flip(-1)                                       # (B, M, L)
            W = project_analog(U)
            if method == "subspace":
                P = U @ U.mH
                for _ in range(SUBSPACE_ITERATIONS):
                    W = project_analog(P @ W)
            return W
        if method == "random":
            # one seeded phase matrix for every sample: a sample's output does not depend on its
            # place in the batch, and the shape is static for export
            phase = 2 * math.pi * torch.rand(M, self.n_rf, generator=as_generator(seed))
            W = torch.polar(torch.ones_like(phase), phase).to(device=inst.H.device, dtype=inst.H.dtype)
            return W.expand(B, M, self.n_rf)
        raise ConfigError(f"hybrid_precoding: unknown init {method!r}; allowed: {', '.join(INITS)}")

    def init(self, inst, method: Optional[str] = None, seed=0) -> torch.Tensor:
        """The packed start: ``analog_start`` and the best digital precoder for it."""
        W_a = self.analog_start(inst, method, seed)
        return self.pack_stacked(W_a, self.digital_given_analog_stacked(W_a, inst))

    def closed_form(self, inst) -> Optional[torch.Tensor]:
        """The fully-digital bound F (B, NB, M, N) where it is exact (logdet); None for sum_rate."""
        return self.fully_digital(inst) if self.objective_kind == "logdet" else None

    def reference_init(self, inst) -> torch.Tensor:
        return self.fully_digital(inst)

    def loss_scale(self, inst) -> torch.Tensor:
        """Per-sample scale of the relative loss: the rate of the fully-digital RZF / water-filling
        precoder, (B,)."""
        with torch.no_grad():
            return self.rate(self.fully_digital(inst), inst).clamp_min(1e-6)

    def supervised_loss(self, x, inst, F_ref) -> torch.Tensor:
        """Relative squared distance of the received-signal matrices H_b F_b and H_b F_ref,b, (B,)."""
        E, E_ref = inst.H @ self.precoders(x, inst), inst.H @ F_ref
        return abs2(E - E_ref).sum((1, 2, 3)) / abs2(E_ref).sum((1, 2, 3)).clamp_min(1e-30)

    def summarize(self, x, inst, F_ref) -> dict:
        """pct_of_bound = 100 mean R / mean R_bound; p5_pct / min_pct over channels; rate_mean;
        feasible (a packed hybrid iterate is checked; a fully-digital F is not hybrid, so False)."""
        r, r_ref = self.objective(x, inst).double(), self.objective(F_ref, inst).double()
        ratio = 100.0 * r / r_ref.clamp_min(1e-12)
        ok = bool(self.feasible(x, inst).all()) if x.dim() == 2 else False
        return {"pct_of_bound": float(100.0 * r.mean() / r_ref.mean()), "p5_pct": float(torch.quantile(ratio, 0.05)),
                "min_pct": float(ratio.min()), "rate_mean": float(r.mean()), "feasible": ok}
