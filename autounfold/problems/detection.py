"""Uplink MIMO detection: U single-antenna users, n_rx base-station antennas, y = H s + w.

The symbols s_u are drawn uniformly from a Gray-labelled QAM constellation of unit average energy
(QPSK or 16-QAM, the same points and bit labels as Sionna's ``Constellation("qam", bits)``: point i
carries the bits of i, most significant first, the even-position bits on the real axis). The noise
is CN(0, noise_var I); with E|H_ij|^2 = 1 the per-sample SNR is 1 / noise_var (Es / N0 per user at
each receive antenna).

A detector returns, per user, probabilities over the constellation: P (B, U, C). Its iterate is the
log of those probabilities (B, U, C), followed by any hidden state the update rule carries (DetNet);
``output`` returns the probabilities. ZF and LMMSE with Gaussian per-user posteriors are the
problem's closed forms (``zf``, ``lmmse``, ``problem.init(inst, "zf" | "lmmse")``); the iterative and
exhaustive detectors live in ``algorithms.detection``.

Two optional mismatch knobs change what the receiver sees, not the symbols (the survey's argument
for DeepSIC: model-based detectors assume the linear Gaussian model exactly):

- ``adc_bits``: each real component of y is quantised by a b-bit uniform mid-rise quantiser after an
  automatic gain control (the per-sample rms of the received real components; step sizes of Max's
  optimal uniform quantiser for a unit Gaussian);
- ``csi_error``: the receiver is given H_hat = H + sqrt(e) E, E i.i.d. CN(0, 1) (an estimate with
  error variance e per entry), not H;
- ``noise_error_db``: the receiver's noise variance is misestimated, the one it is given is the true
  one times 10^(d / 10) with d uniform in [-D, D] dB per sample (a mismatched SNR: what the
  detectors that weigh the prior against the likelihood by it, LMMSE, SIC, EP, are sensitive to).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from ..channels.base import CHANNEL_SAMPLING_KEYS, ChannelConfig, ChannelSource, build_channel, check_channel
from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from ..seeding import as_generator
from .base import Problem, ProblemConfig, batch_scalar

MODULATIONS = {"qpsk": 2, "16qam": 4}
"""Modulation name -> bits per symbol."""

MONITOR_CANDIDATES = ("iid_rayleigh", "umi", "uma")
"""Channel models ``drift_changes`` tells apart (beside the problem's own)."""
MONITOR_POOL_SEED = 20260901
"""Seed of the candidates' draws (their 3GPP pools differ from the usual training pools 0, 1, ...)."""
SHADOW_ALPHA = 0.01
"""Significance of the sign test behind the SER shadow alarm."""

ADC_STEPS = {1: 1.596, 2: 0.996, 3: 0.586, 4: 0.335, 5: 0.188, 6: 0.104, 7: 0.057, 8: 0.031}
"""Step of the optimal uniform b-bit quantiser for a unit-variance Gaussian (Max 1960), by b."""


def _pam_gray(bits) -> int:
    """The Gray-labelled PAM level of a bit tuple (most significant first): 1 - 2 b_0 for one bit,
    and recursively (1 - 2 b_0) (2^(n-1) - level(rest)), the recursion Sionna's ``pam_gray`` uses."""
    if len(bits) == 1:
        return 1 - 2 * bits[0]
    return (1 - 2 * bits[0]) * (2 ** (len(bits) - 1) - _pam_gray(bits[1:]))


def qam(bits_per_symbol: int):
    """Gray-labelled square QAM of unit average energy.

    Returns:
        points: (C,) complex64, C = 2**bits_per_symbol; point i carries the bits of i (MSB first).
        labels: (C, bits_per_symbol) int64, the bits of each point.
    """
    if bits_per_symbol < 2 or bits_per_symbol % 2:
        raise ConfigError(f"qam: bits_per_symbol must be an even number >= 2 (got {bits_per_symbol})")
    C = 2 ** bits_per_symbol
    labels = torch.tensor([[(i >> (bits_per_symbol - 1 - j)) & 1 for j in range(bits_per_symbol)] for i in range(C)])
    pts = torch.tensor([complex(_pam_gray(tuple(b[0::2].tolist())), _pam_gray(tuple(b[1::2].tolist()))) for b in labels],
                       dtype=torch.complex128)
    pts = pts / pts.abs().square().mean().sqrt()
    return pts.to(torch.complex64), labels


def quantize(y: torch.Tensor, bits: int) -> torch.Tensor:
    """A b-bit ADC per real component of y (B, N) complex: gain control to the sample's rms per real
    component, then a uniform mid-rise quantiser (levels (k + 1/2) step, k = -2^(b-1) .. 2^(b-1) - 1),
    scaled back. Returns (B, N) complex64."""
    if bits not in ADC_STEPS:
        raise ConfigError(f"adc_bits must be in 1..8 (got {bits})")
    r = torch.view_as_real(y)                                          # (B, N, 2)
    rms = r.square().mean((-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    step = ADC_STEPS[bits]
    half = 2 ** (bits - 1)
    k = torch.clamp(torch.floor(r / rms / step), -half, half - 1)
    return torch.view_as_complex(((k + 0.5) * step * rms).contiguous())


class DetectionConfig(ProblemConfig):
    """``problem:`` of a MIMO detection experiment (``name: detection``).

    ``n_users`` (U) and ``n_rx`` (N) are the sizes; the channel section gives the model, the SNR range
    and its settings, and its ``n_tx`` / ``n_rx`` are U / N (leave them out, or give the same numbers)."""

    name: Literal["detection"] = "detection"
    n_users: int = Field(4, ge=1)
    n_rx: int = Field(4, ge=1)
    modulation: Literal["qpsk", "16qam"] = "qpsk"
    adc_bits: Optional[int] = Field(None, ge=1, le=8)
    csi_error: float = Field(0.0, ge=0.0, le=10.0)
    noise_error_db: float = Field(0.0, ge=0.0, le=20.0)
    channel: ChannelConfig = ChannelConfig(model="iid_rayleigh", n_tx=4, n_rx=4, snr_db=(0.0, 20.0))

    @model_validator(mode="before")
    @classmethod
    def _sizes_are_channel_sizes(cls, data):
        if isinstance(data, dict):
            u, n = data.get("n_users", 4), data.get("n_rx", 4)
            ch = dict(data.get("channel") or {})
            for key, want, what in (("n_tx", u, "n_users"), ("n_rx", n, "n_rx")):
                if key in ch and ch[key] != want:
                    raise ValueError(f"channel.{key} ({ch[key]}) must equal {what} ({want}) (the users are the "
                                     f"channel's transmit side); set both, or leave channel.{key} out")
            ch.update({"n_tx": u, "n_rx": n})
            ch.setdefault("model", "iid_rayleigh")
            ch.setdefault("snr_db", (0.0, 20.0))
            ch.setdefault("bs_side", "rx")            # 3GPP sources: the base station receives (uplink)
            ch.setdefault("users", "multi")           # and each column is its own single-antenna user
            data = {**data, "channel": ch}
        return data


def gaussian_logits(est: torch.Tensor, nu: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """log-probabilities (B, U, C) of each point under s^ = s + CN(0, nu): est (B, U) complex, nu (B, U)."""
    d = (est.unsqueeze(-1) - points).abs().square()
    return torch.log_softmax(-d / nu.unsqueeze(-1), dim=-1)


def sic_statistics(problem, inst, x, inflation=None, leakage: bool = False, moments=None):
    """The SIC step's per-user estimate s^ (B, U) complex64, its effective noise variance nu (B, U)
    and the matched-filter SNR ||h_u||^2 / s2 (B, U), at the iterate x (module docstring).
    ``inflation`` (a scalar or (B,), >= 0) is added to the noise variance the step assumes: the
    model-based way to account for what the linear Gaussian model leaves out (quantisation, CSI
    error); 0 or None is the classical step. ``leakage``: also return L (B, U, U) complex64,
    L[u, j] = g_u^H h_j / t_u, so that s^_u - s_u = sum_{j != u} L[u, j] (s_j - m_j) + filtered noise
    (L[u, u] = 1; nu_u = sum_{j != u} |L[u, j]|^2 v_j + the filtered noise's variance), and the soft
    symbols m (B, U) complex64, v (B, U) the step used. ``moments``: those soft symbols (m, v) where the
    caller already has them (``problem.soft_symbols(x)``), so they are not computed twice."""
    H, y, s2 = inst.H, inst.y, inst.noise_var
    if inflation is not None:
        s2 = s2 + batch_scalar(inflation, s2)
    m, v = problem.soft_symbols(x) if moments is None else moments
    U = H.shape[-1]
    # push-through: (H D H^H + s2 I)^-1 H = H (D H^H H + s2 I)^-1, a U x U solve
    gram = H.mH @ H                                                             # (B, U, U)
    eye = torch.eye(U, dtype=H.dtype, device=H.device)
    A = v.to(H.dtype).unsqueeze(-1) * gram + s2.to(H.dtype).view(-1, 1, 1) * eye
    G = H @ torch.linalg.inv(A)                                                 # B^-1 H, (B, N, U)
    t = (H.conj() * G).sum(-2).real.clamp_min(1e-12)                            # h_u^H B^-1 h_u
    r = y - (H @ m.unsqueeze(-1)).squeeze(-1)
    est = m + (G.conj() * r.unsqueeze(-1)).sum(-2) / t
    nu = (1.0 / t - v).clamp_min(1e-6)
    mf_snr = H.abs().square().sum(-2) / s2.unsqueeze(-1)
    if leakage:
        return est, nu, mf_snr, (G.mH @ H) / t.unsqueeze(-1).to(H.dtype), m, v
    return est, nu, mf_snr


def zf(problem, inst) -> torch.Tensor:
    """Zero forcing: s^ = H^+ y, nu_u = s2 [(H^H H)^-1]_uu; Gaussian log-probabilities (B, U, C).
    Needs n_users <= n_rx (H^H H invertible)."""
    H = inst.H
    if H.shape[-1] > H.shape[-2]:
        raise ConfigError(f"zero forcing needs n_users <= n_rx (got {H.shape[-1]} users, {H.shape[-2]} antennas)")
    gram = H.mH @ H
    inv = torch.linalg.inv(gram + 1e-9 * torch.eye(H.shape[-1], dtype=H.dtype, device=H.device))
    est = (inv @ (H.mH @ inst.y.unsqueeze(-1))).squeeze(-1)
    nu = inst.noise_var.unsqueeze(-1) * inv.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)
    return gaussian_logits(est, nu, problem.points(H))


def lmmse(problem, inst) -> torch.Tensor:
    """The per-user unbiased LMMSE detector with Gaussian log-probabilities (B, U, C): one SIC
    iteration from the uniform start."""
    x0 = problem.init(inst)
    est, nu, _ = sic_statistics(problem, inst, x0)
    return gaussian_logits(est, nu, problem.points(x0))


def sign_test(worse: int, discordant: int) -> float:
    """One-sided exact sign test: P(X >= worse) for X ~ Binomial(discordant, 1/2), the chance that a
    detector as good as the reference errs alone on at least ``worse`` of the ``discordant`` symbols
    where exactly one of the two errs. 1.0 when there are none."""
    if discordant <= 0 or worse <= 0:
        return 1.0
    k = torch.arange(worse, discordant + 1, dtype=torch.float64)
    n = torch.tensor(float(discordant), dtype=torch.float64)
    log_terms = torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1) - n * math.log(2.0)
    return float(torch.logsumexp(log_terms, 0).exp().clamp(max=1.0))


def _change(**channel) -> dict:
    return {"channel": dict(channel)}


@dataclass
class DetectionBatch:
    """y: (B, N) complex64 received; H: (B, N, U) complex64 the channel the receiver is given;
    noise_var: (B,) float32; s: (B, U) int64 transmitted symbol indices (None for external inputs);
    snr_db: (B,) float32."""

    y: torch.Tensor
    H: torch.Tensor
    noise_var: torch.Tensor
    s: Optional[torch.Tensor]
    snr_db: torch.Tensor

    def to(self, device) -> "DetectionBatch":
        return DetectionBatch(self.y.to(device), self.H.to(device), self.noise_var.to(device),
                              None if self.s is None else self.s.to(device), self.snr_db.to(device))

    @property
    def batch_size(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, idx) -> "DetectionBatch":
        return DetectionBatch(self.y[idx], self.H[idx], self.noise_var[idx], None if self.s is None else self.s[idx],
                              self.snr_db[idx])


@PROBLEMS.register
class DetectionProblem(Problem):
    """Uplink MIMO detection (module docstring).

    Args:
        source: the channel source; its n_tx is U (users), its n_rx is N (receive antennas).
        modulation: "qpsk" or "16qam".
        adc_bits: None (ideal receiver) or 1..8 bits per real component.
        csi_error: error variance e of the receiver's channel estimate (0: perfect CSI).
        noise_error_db: D, the receiver's noise-variance estimate is off by up to D dB (0: exact).
    """

    name = "detection"
    Config = DetectionConfig
    sense = -1.0
    score_key = "ser"
    score_sign = -1.0
    metrics = {"ser": "symbol error rate (hard decision: the most probable point per user)",
               "ber": "bit error rate of the hard decisions",
               "ce": "mean cross-entropy of the true symbols under P, nats per symbol",
               "feasible": "probabilities finite, non-negative and summing to 1"}
    classical = ("zf", "lmmse", "sic", "sic_tuned", "sic_mix", "detnet_classical", "admm_tuned", "ep", "ep_tuned", "kbest", "ml")
    sampling_keys = CHANNEL_SAMPLING_KEYS + ("csi_error", "noise_error_db")
    operating_key = "channel.snr_db"
    scenarios = {
        "nominal": ("nominal (the trained configuration)", {}),
        "snr5": ("SNR 5 dB", _change(snr_db=[5.0, 5.0])),
        "snr10": ("SNR 10 dB", _change(snr_db=[10.0, 10.0])),
        "snr15": ("SNR 15 dB", _change(snr_db=[15.0, 15.0])),
        "snr20": ("SNR 20 dB", _change(snr_db=[20.0, 20.0])),
        "correlated": ("correlated Rayleigh at the receiver (rho 0.5), independent users",
                       _change(model="correlated_rayleigh", tx_rho=0.0, rx_rho=0.5)),
        "umi": ("3GPP UMi (Sionna, 3.5 GHz), users at their own positions", _change(model="umi")),
        "uma": ("3GPP UMa (Sionna, 3.5 GHz), users at their own positions", _change(model="uma")),
        "csi_error": ("channel estimate with error variance 0.05", {"csi_error": 0.05}),
        "noise_error3": ("noise variance misestimated by up to 3 dB", {"noise_error_db": 3.0}),
        "adc3": ("3-bit ADCs", {"adc_bits": 3}),
    }
    monitored = True                 # the monitor watches the receive side (monitor_rows) and scores SER
    monitor_csi = True               # recorded CSI windows carry H (n_rx x users); traffic() sends symbols
    shadow_fraction = 1.0            # the LMMSE reference costs less than the detector: every served symbol
    # promote's default tolerance in SER (the score is -SER): 0.002 = 0.2 points of SER. The base 0.05 is
    # 5 points, about the whole SER of these detectors (0.05-0.075 on 4 x 4 QPSK over 0-20 dB on UMi / UMa,
    # README drift demo), so any challenger would pass. 0.002 is ~3 % more symbol errors at that SER, the
    # same 3 % the monitor's shadow alarm allows against LMMSE (97 %), and what make drift-demo-3gpp passed.
    promote_tolerance = 0.002
    inputs = "y (B, n_rx) complex64, H (B, n_rx, n_users) complex64, noise_var (B,) float32"
    outputs = "P (B, n_users, C) float32: probabilities over problem.constellation (C,) complex64"

    @classmethod
    def from_config(cls, cfg: DetectionConfig) -> "DetectionProblem":
        return cls(build_channel(cfg.channel), modulation=cfg.modulation, adc_bits=cfg.adc_bits,
                   csi_error=cfg.csi_error, noise_error_db=cfg.noise_error_db)

    @classmethod
    def memory_estimate(cls, cfg: DetectionConfig, batch: int) -> dict:
        C = 2 ** MODULATIONS[cfg.modulation]
        return {"problem.n_rx x n_users x batch": 8 * 16 * batch * cfg.n_rx * max(cfg.n_users, cfg.n_rx),
                "problem.n_users x C x batch": 4 * 64 * batch * cfg.n_users * C}

    def __init__(self, source: ChannelSource, modulation: str = "qpsk", adc_bits: Optional[int] = None,
                 csi_error: float = 0.0, noise_error_db: float = 0.0):
        if modulation not in MODULATIONS:
            raise ConfigError(f"detection: modulation must be one of {', '.join(MODULATIONS)} (got {modulation!r})")
        if adc_bits is not None and adc_bits not in ADC_STEPS:
            raise ConfigError(f"detection: adc_bits must be in 1..8 or None (got {adc_bits})")
        if not 0.0 <= csi_error <= 10.0:
            raise ConfigError(f"detection: csi_error must be in [0, 10] (got {csi_error})")
        if not 0.0 <= noise_error_db <= 20.0:
            raise ConfigError(f"detection: noise_error_db must be in [0, 20] (got {noise_error_db})")
        self.source, self.modulation, self.adc_bits, self.csi_error = source, modulation, adc_bits, float(csi_error)
        self.noise_error_db = float(noise_error_db)
        self.n_users, self.n_rx = source.n_tx, source.n_rx
        self.bits_per_symbol = MODULATIONS[modulation]
        self.constellation, self.labels = qam(self.bits_per_symbol)
        self.num_points = self.constellation.numel()

    def settings(self):
        return {"n_users": self.n_users, "n_rx": self.n_rx, "modulation": self.modulation, "adc_bits": self.adc_bits,
                "csi_error": self.csi_error, "noise_error_db": self.noise_error_db}

    def signature(self) -> dict:
        return {"problem": self.name, "n_users": self.n_users, "n_rx": self.n_rx, "modulation": self.modulation}

    def describe(self) -> dict:
        return {"problem": self.name, **self.settings(), "channel": self.source.describe()}

    def dims(self, inst) -> dict:
        return {"n_users": inst.H.shape[-1], "n_rx": inst.H.shape[-2]}

    def points(self, like: torch.Tensor) -> torch.Tensor:
        """The constellation (C,) complex64 on ``like``'s device."""
        return self.constellation.to(like.device)

    # ---- instances -------------------------------------------------------------------------
    def sample(self, batch: int, seed, device="cpu") -> DetectionBatch:
        """Channels from the source, symbols uniform over the constellation, then the receiver's
        view: y (quantised if ``adc_bits``) and H (with the estimation error if ``csi_error``)."""
        g = as_generator(seed)
        return self._transmit(self.source.sample(batch, g), g).to(device)

    def _transmit(self, ch, g: torch.Generator) -> DetectionBatch:
        """Symbols uniform over the constellation sent over the channels ``ch`` (H (B, N, U)) with its
        noise, as the receiver sees them (``sample`` after the channel draw; the monitor's ``traffic``)."""
        batch, n_rx, n_users = ch.H.shape
        s = torch.randint(self.num_points, (batch, n_users), generator=g)
        x = self.constellation[s]                                                     # (B, U)
        w = torch.view_as_complex(torch.randn(batch, n_rx, 2, generator=g) * math.sqrt(0.5))
        y = (ch.H @ x.unsqueeze(-1)).squeeze(-1) + w * ch.noise_var.sqrt().unsqueeze(-1)
        if self.adc_bits is not None:
            y = quantize(y, self.adc_bits)
        H = ch.H
        if self.csi_error > 0:
            E = torch.view_as_complex(torch.randn(*H.shape, 2, generator=g) * math.sqrt(0.5))
            H = H + math.sqrt(self.csi_error) * E
        noise_var = ch.noise_var
        if self.noise_error_db > 0:
            d = (2 * torch.rand(batch, generator=g) - 1) * self.noise_error_db
            noise_var = noise_var * 10 ** (d / 10)
        return DetectionBatch(y.to(torch.complex64), H.to(torch.complex64), noise_var.float(), s, ch.snr_db)

    def instance(self, y: torch.Tensor, H: torch.Tensor, noise_var: torch.Tensor) -> DetectionBatch:
        """Validated instance from y (B, n_rx) complex, H (B, n_rx, U) complex, noise_var (B,) float.
        U and n_rx may differ from the configured sizes (a model fixes only what its weights fix)."""
        check_channel(H, noise_var)
        if not isinstance(y, torch.Tensor) or not y.is_complex() or y.shape != H.shape[:2]:
            raise InputError(f"y must be a complex tensor of shape (B, n_rx) = {tuple(H.shape[:2])} matching H, got "
                             f"{tuple(getattr(y, 'shape', ()))} {getattr(y, 'dtype', type(y).__name__)}")
        if not torch.isfinite(torch.view_as_real(y.resolve_conj())).all():
            raise InputError("y contains NaN or Inf")
        snr_db = -10.0 * torch.log10(noise_var.float())
        return DetectionBatch(y.to(torch.complex64), H.to(torch.complex64), noise_var.float(), None, snr_db)

    # ---- the real-valued interface of `autounfold export` and the MLflow signature --------------
    def real_interface(self) -> dict:
        """y_real (B, n_rx, 2), H_real (B, n_rx, n_users, 2), noise_var (B,) in; P (B, n_users, C) out."""
        N, U, C = self.n_rx, self.n_users, self.num_points
        return {"inputs": {"y_real": ["B", N, 2], "H_real": ["B", N, U, 2], "noise_var": ["B"]},
                "output": {"P": ["B", U, C]}, "dtype": "float32"}

    def from_real(self, y_real: torch.Tensor, H_real: torch.Tensor, noise_var: torch.Tensor) -> DetectionBatch:
        """An instance from the real-valued interface (no validation: the exported boundary's caller checks)."""
        return DetectionBatch(torch.view_as_complex(y_real.contiguous()), torch.view_as_complex(H_real.contiguous()),
                              noise_var, None, -10.0 * torch.log10(noise_var))

    def to_real(self, inst: DetectionBatch):
        return (torch.view_as_real(inst.y).contiguous(), torch.view_as_real(inst.H).contiguous(), inst.noise_var)

    # ---- what detectors share ----------------------------------------------------------------
    def init(self, inst, method=None, seed=0):
        """The start as log-probabilities (B, U, C): uniform over the constellation (default), or the
        ZF / LMMSE detector's Gaussian posteriors (``method`` "zf" / "lmmse")."""
        if method in ("zf", "lmmse"):
            return (zf if method == "zf" else lmmse)(self, inst)
        if method not in (None, "uniform"):
            raise ConfigError(f"detection: init must be uniform, zf or lmmse (got {method!r})")
        U = inst.H.shape[-1]
        return torch.full((inst.batch_size, U, self.num_points), -math.log(self.num_points), device=inst.y.device)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The log-probabilities (B, U, C) an iterate holds (its first C entries per user)."""
        return x[..., :self.num_points]

    def output(self, x, inst):
        return self.log_probs(x).exp()

    def soft_symbols(self, x: torch.Tensor):
        """Mean (B, U) complex64 and variance (B, U) float32 of each user's symbol under the iterate's
        probabilities."""
        P = self.log_probs(x).exp()
        c = self.points(x)
        mean = P.to(torch.complex64) @ c
        var = (P @ c.abs().square() - mean.abs().square()).clamp_min(0.0)
        return mean, var

    def objective(self, x, inst):
        """Expected squared residual E_P ||y - H s||^2 under the iterate's (independent) per-user
        probabilities, (B,): ||y - H m||^2 + sum_u v_u ||h_u||^2 (a detector drives it down)."""
        m, v = self.soft_symbols(x)
        r = inst.y - (inst.H @ m.unsqueeze(-1)).squeeze(-1)
        return r.abs().square().sum(-1) + (v * inst.H.abs().square().sum(-2)).sum(-1)

    def feasible(self, x, inst, rtol: float = 1e-4):
        P = self.output(x, inst)
        return torch.isfinite(P).all((-2, -1)) & ((P.sum(-1) - 1).abs() <= 1e-3).all(-1) & (P >= 0).all((-2, -1))

    def ground_truth(self, inst):
        return inst.s

    def loss_scale(self, inst):
        raise ConfigError("detection trains on the cross-entropy of the transmitted symbols: set "
                          "training.target: supervised")

    def supervised_target(self, inst):
        if inst.s is None:
            raise InputError("supervised training needs instances with the transmitted symbols")
        return inst.s

    def supervised_loss(self, x, inst, s):
        """Cross-entropy of the true symbols, mean over users, (B,) (nats)."""
        return -self.log_probs(x).gather(-1, s.unsqueeze(-1)).squeeze(-1).mean(-1)

    def hard(self, x) -> torch.Tensor:
        """The most probable point per user, (B, U) int64."""
        return self.log_probs(x).argmax(-1)

    def summarize(self, x, inst, s) -> dict:
        """ser / ber of the hard decisions against the true symbols ``s`` (B, U), ce, feasible."""
        if s is None:
            raise InputError("SER needs instances with the transmitted symbols")
        hard = self.hard(x)
        labels = self.labels.to(hard.device)
        ser = float((hard != s).double().mean())
        ber = float((labels[hard] != labels[s]).double().mean())
        lp = self.log_probs(x).clamp_min(-1e4)
        ce = float(-lp.gather(-1, s.unsqueeze(-1)).double().mean())
        return {"ser": ser, "ber": ber, "ce": ce, "feasible": bool(self.feasible(x, inst).all())}

    def score_count(self, inst) -> int:
        """Symbols the SER counts: B x U."""
        return int(inst.H.shape[0] * inst.H.shape[-1])

    # ---- the drift monitor (autounfold.monitoring): the receive side and SER -----------------------
    def is_monitored(self) -> bool:
        return self.n_rx >= 2            # the watched statistic is the coherence across the receive array

    def traffic(self, batch, seed) -> DetectionBatch:
        """Served traffic over a window of channels: a ``DetectionBatch`` passes; a ``ChannelBatch`` (H
        (B, n_rx, n_users) from a source or recorded CSI, noise_var (B,)) carries symbols drawn from
        ``seed`` (uniform, as ``sample``), the noise and this receiver's ADC / CSI-error view. The monitor
        knows what was sent, as a deployment knows its pilots (or the CRC-checked decisions)."""
        if isinstance(batch, DetectionBatch):
            return batch
        H = getattr(batch, "H", None)
        check_channel(H, getattr(batch, "noise_var", None))
        if tuple(H.shape[1:]) != (self.n_rx, self.n_users):
            raise InputError(f"detection monitor: the window's H is {H.shape[1]} x {H.shape[2]} (n_rx x users); "
                             f"this model detects {self.n_users} users at {self.n_rx} antennas "
                             f"({self.n_rx} x {self.n_users})")
        return self._transmit(batch, as_generator(seed))

    def monitor_rows(self, inst) -> torch.Tensor:
        """Per user u, the magnitudes of the normalised spatial autocorrelation of its receive vector h_u
        (N antennas) at lags l = 1..N-1: |sum_i h_u,i conj(h_u,i+l)| / ||h_u||^2, (B * U, N - 1) float64.

        Why not the receive covariance E[h h^H]: users at their own positions in a 120-degree sector
        average it over arrival angles, which washes out what changes between channel models (UMi -> UMa
        moves it by 0.11-0.21 against 0.05-0.10 for fresh UMi users at 4 x 4 and 8 x 8, windows of 512).
        The per-user coherence is each user's angular spread at the base station, free of phase and
        gain: the same windows move 0.22-0.45 against <= 0.035 (README)."""
        h = inst.H.transpose(-1, -2).reshape(-1, inst.H.shape[-2]).to(torch.complex128)     # (B * U, N)
        N = h.shape[-1]
        if N < 2:
            raise InputError("detection monitor: the receive-array coherence needs n_rx >= 2 (got 1)")
        power = h.abs().square().sum(-1, keepdim=True).clamp_min(1e-30)
        lags = torch.stack([(h[:, :N - lag].conj() * h[:, lag:]).sum(-1) for lag in range(1, N)], -1)
        return lags.abs() / power

    def monitor_loss(self, x, inst) -> torch.Tensor:
        """The training loss (cross-entropy of the sent symbols) where they are known, else the objective."""
        if inst.s is None:
            return self.objective(x, inst)
        return self.supervised_loss(x, inst, inst.s)

    def monitor_shadow(self, x, inst, mask, threshold_pct: float) -> dict:
        """SER of the model against the LMMSE detector on the same served symbols (the samples ``mask``).

        ``shadow_pct`` = 100 (e_ref + 1) / (e_model + 1) with e the symbol errors of each (100: as many
        as LMMSE; 200: half as many; +1 so a window without errors reads 100). ``shadow_alarm``: below
        ``threshold_pct`` (97: 3 % more errors than LMMSE) and significant, the one-sided exact sign test
        of the discordant symbols (model wrong where LMMSE is right, and the reverse) at p < SHADOW_ALPHA,
        so a small window's noise does not ring it. Also ``ser`` (the model on the whole window),
        ``shadow_ser`` / ``shadow_reference_ser`` (both on the shadow share) and ``shadow_p_value``."""
        if inst.s is None:
            raise InputError("detection monitor: the SER shadow metric needs the sent symbols (traffic from "
                             "problem.traffic or problem.sample)")
        sub = inst[mask]
        wrong = self.hard(x[mask]) != sub.s
        wrong_ref = self.hard(lmmse(self, sub)) != sub.s
        e, e_ref, n = int(wrong.sum()), int(wrong_ref.sum()), wrong.numel()
        worse, better = int((wrong & ~wrong_ref).sum()), int((~wrong & wrong_ref).sum())
        p = sign_test(worse, worse + better)
        pct = 100.0 * (e_ref + 1) / (e + 1)
        ser, ser_ref = e / max(n, 1), e_ref / max(n, 1)
        return {"shadow_pct": pct, "shadow_alarm": bool(pct < threshold_pct and p < SHADOW_ALPHA),
                "ser": float((self.hard(x) != inst.s).double().mean()), "shadow_ser": ser,
                "shadow_reference_ser": ser_ref, "shadow_p_value": p,
                "shadow_line": f"SER {ser:.4f} vs LMMSE {ser_ref:.4f} ({pct:.0f}%)"}

    def estimate_angular_spread(self, R) -> float:
        """The users' (transmit-side) angular spread the source has (15 where it has none): the monitor
        watches the receive side, so a re-search keeps it; ``drift_changes`` names the channel model."""
        default = ChannelConfig.model_fields["angular_spread_deg"].default
        return float(getattr(self.source, "angular_spread_deg", default))

    def drift_changes(self, R) -> dict:
        """``{"channel.model": M}`` for the candidate model (MONITOR_CANDIDATES and this problem's own)
        whose monitored moment (a fixed-seed draw of 1024 channels at this problem's sizes and pool size,
        computed once) is nearest to R in Frobenius norm, when M is not this problem's model; else {}."""
        own = self.source.name
        key = ("monitor-candidates", self.n_rx, self.n_users)
        cache = self.__dict__.setdefault("_monitor_cache", {})
        if key not in cache:
            moments = {}
            for name in dict.fromkeys((own, *MONITOR_CANDIDATES)):
                src = self.source if name == own else build_channel(ChannelConfig(
                    model=name, n_tx=self.n_users, n_rx=self.n_rx, bs_side="rx", users="multi",
                    carrier_frequency_ghz=getattr(self.source, "carrier_frequency_ghz", 3.5),
                    pool=getattr(self.source, "pool", None), pool_seed=MONITOR_POOL_SEED))
                rows = self.monitor_rows(src.sample(1024, MONITOR_POOL_SEED)).to(torch.complex128)
                moments[name] = rows.mH @ rows / rows.shape[0]
            cache[key] = moments
        R = R.to(torch.complex128).cpu()
        best = min(cache[key], key=lambda m: float((cache[key][m] - R).abs().square().sum()))
        return {} if best == own else {"channel.model": best}
