"""Multi-band (frequency-selective) channels for problems that precode over several bands at once
(hybrid precoding): H (B, n_bands, n_users, n_antennas) complex64.

The models, named in the ``problem.channel.model`` of such a problem:

| model | what |
|---|---|
| ``clustered`` | a clustered multipath (Saleh-Valenzuela-type) model on a half-wavelength ULA: per user C clusters of R rays, cluster angles uniform over the sector, ray angles Laplacian around them (``angular_spread_deg``), one delay per cluster uniform in [0, ``max_delay``] samples of 1/bandwidth, so band b sees the phase exp(-j 2 pi b tau / n_bands): bands are correlated as much as the delays allow |
| ``iid`` | i.i.d. CN(0, 1) entries, independent across bands (the control: no structure to exploit) |
| ``umi``, ``uma``, ``cdl``, ``tdl`` | 3GPP TR 38.901 through Sionna (``channels/tr38901.py``), multi-user downlink: the base station's M antennas are the columns, each of the N users is its own single-antenna terminal (a row; umi/uma: dropped at its own position), and the n_bands bands are ``sample_bands``' subcarriers equally spaced over ``bandwidth_mhz`` (snapped to the ``subcarrier_spacing_khz`` grid), all seen from ONE realisation per user: frequency selectivity from the model's own delays, the spatial structure shared by the bands |

All have E|H_b[n, m]|^2 = 1, so the SNR is P / noise_var: the 3GPP models with path loss off (each
umi/uma user's wideband power over the BS antennas normalised to 1, cdl by one calibrated constant,
tdl by its own power delay profile; there is no ``pathloss`` setting here). Draws are pure functions
of the generator (CPU), like every ``ChannelSource``; the 3GPP draws come from a pool of user
realisations built once per process from ``pool_seed`` (``pool``; see ``channels/tr38901.py``).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Tuple

import torch
from pydantic import Field, field_validator, model_validator

from ..errors import ConfigError, InputError
from ..schema import Schema
from ..seeding import as_generator
from .base import ChannelBatch, complex_gaussian, ordered_range

TR38901_MODELS = ("umi", "uma", "cdl", "tdl")
WIDEBAND_MODELS = ("clustered", "iid") + TR38901_MODELS
# the settings of the 3GPP models (ignored by clustered / iid) and those of the clustered model
TR38901_FIELDS = ("carrier_frequency_ghz", "delay_spread_ns", "cdl_model", "subcarrier_spacing_khz", "bandwidth_mhz",
                  "pool", "pool_seed")
CLUSTERED_FIELDS = ("n_clusters", "n_rays", "angular_spread_deg", "sector_deg", "max_delay", "antenna_spacing")


def band_subcarriers(bandwidth_mhz: float, subcarrier_spacing_khz: float) -> int:
    """How many subcarriers of the spacing fit in the bandwidth (the most bands a 3GPP draw can have)."""
    return int(math.floor(bandwidth_mhz * 1e3 / subcarrier_spacing_khz + 1e-9))


# the WidebandConfig keys that change only the distribution of H (``Problem.sampling_keys``)
WIDEBAND_SAMPLING_KEYS = tuple(f"channel.{k}" for k in (
    "model", "snr_db", "n_clusters", "n_rays", "angular_spread_deg", "sector_deg", "max_delay", "antenna_spacing",
    "carrier_frequency_ghz", "delay_spread_ns", "cdl_model", "subcarrier_spacing_khz", "bandwidth_mhz", "pool",
    "pool_seed"))


class WidebandConfig(Schema):
    """The ``problem.channel`` section of a multi-band problem. Sizes (antennas, users, bands) live
    in the problem section; this holds the model, the SNR range, the power, the clustered model's
    settings (ignored by the others) and the 3GPP models' settings (ignored by clustered and iid)."""

    model: Literal["clustered", "iid", "umi", "uma", "cdl", "tdl"] = "clustered"
    snr_db: Tuple[float, float] = (0.0, 20.0)
    power: float = Field(1.0, gt=0)
    n_clusters: int = Field(4, ge=1, le=64)
    n_rays: int = Field(5, ge=1, le=64)
    angular_spread_deg: float = Field(10.0, ge=0, le=90)
    sector_deg: float = Field(120.0, gt=0, le=180)
    max_delay: float = Field(4.0, ge=0)
    antenna_spacing: float = Field(0.5, gt=0)
    # the 3GPP TR 38.901 models (umi, uma, cdl, tdl; channels/tr38901.py); ignored by clustered / iid
    carrier_frequency_ghz: float = Field(3.5, ge=0.5, le=100)
    delay_spread_ns: float = Field(100.0, gt=0, le=10000)
    """RMS delay spread of cdl / tdl (umi / uma draw their own)."""
    cdl_model: Literal["A", "B", "C", "D", "E"] = "C"
    """Profile letter of cdl and tdl."""
    subcarrier_spacing_khz: float = Field(30.0, gt=0)
    bandwidth_mhz: float = Field(20.0, gt=0, le=2000)
    """The span the bands are spread over (band centres snapped to the subcarrier grid)."""
    pool: Optional[int] = Field(None, ge=0)
    """User realisations pooled once and resampled (None: automatic size, 0: fresh draws every call)."""
    pool_seed: int = 0

    _ordered = field_validator("snr_db")(ordered_range)

    @model_validator(mode="after")
    def _tr38901_settings(self):
        if self.model in TR38901_MODELS:
            if band_subcarriers(self.bandwidth_mhz, self.subcarrier_spacing_khz) < 1:
                raise ValueError(f"bandwidth_mhz={self.bandwidth_mhz} holds no subcarrier of "
                                 f"subcarrier_spacing_khz={self.subcarrier_spacing_khz}")
            if self.antenna_spacing != 0.5 and self.model != "tdl":             # tdl: no array geometry
                raise ValueError(f"antenna_spacing={self.antenna_spacing}: the {self.model} arrays are "
                                 "half-wavelength (0.5); leave antenna_spacing out")
        return self


def check_wideband(H: torch.Tensor, noise_var: torch.Tensor) -> None:
    """InputError unless H is (B, n_bands, n_users, n_antennas) complex and finite and noise_var (B,) > 0."""
    if not isinstance(H, torch.Tensor) or not H.is_complex():
        raise InputError(f"H must be a complex tensor of shape (B, n_bands, n_users, n_antennas), got "
                         f"{getattr(H, 'dtype', type(H).__name__)}")
    if H.dim() != 4:
        raise InputError(f"H must have shape (B, n_bands, n_users, n_antennas), got {tuple(H.shape)}")
    if not isinstance(noise_var, torch.Tensor) or noise_var.shape != (H.shape[0],):
        raise InputError(f"noise_var must be a tensor of shape ({H.shape[0]},), got "
                         f"{tuple(getattr(noise_var, 'shape', ()))}")
    if not torch.isfinite(torch.view_as_real(H.resolve_conj())).all():
        raise InputError("H contains NaN or Inf")
    if not torch.isfinite(noise_var).all() or (noise_var <= 0).any():
        raise InputError("noise_var must be finite and > 0")


class WidebandSource:
    """Seeded multi-band channels.

    Args:
        n_antennas (M), n_users (N), n_bands: sizes; cfg: the model and its settings.
    ``sample(batch, seed, device)`` returns a ``ChannelBatch`` whose H is (B, n_bands, N, M) complex64.
    """

    def __init__(self, n_antennas: int, n_users: int, n_bands: int, cfg: WidebandConfig):
        if min(n_antennas, n_users, n_bands) < 1:
            raise ConfigError(f"wideband channel: sizes must be >= 1 (got n_antennas={n_antennas}, "
                              f"n_users={n_users}, n_bands={n_bands})")
        self.n_antennas, self.n_users, self.n_bands, self.cfg = n_antennas, n_users, n_bands, cfg
        self.name, self.power, self.snr_db = cfg.model, float(cfg.power), tuple(cfg.snr_db)
        # the generic tools read n_tx / n_rx: transmit antennas and receivers
        self.n_tx, self.n_rx = n_antennas, n_users
        self.antenna_spacing = cfg.antenna_spacing
        self.tr38901 = self._tr38901_source() if cfg.model in TR38901_MODELS else None

    def _tr38901_source(self):
        """The 3GPP source behind a umi / uma / cdl / tdl model: downlink (the BS's M antennas are the
        columns), N single-antenna users (the rows), path loss off (E|H|^2 = 1)."""
        from ..plugins import CHANNELS
        c = self.cfg
        n_sc = band_subcarriers(c.bandwidth_mhz, c.subcarrier_spacing_khz)
        if self.n_bands > n_sc:
            raise ConfigError(f"wideband channel {c.model}: n_bands={self.n_bands} exceeds the {n_sc} subcarriers of "
                              f"bandwidth_mhz={c.bandwidth_mhz} at subcarrier_spacing_khz={c.subcarrier_spacing_khz}")
        return CHANNELS.get(c.model)(
            n_tx=self.n_antennas, n_rx=self.n_users, snr_db=self.snr_db, power=self.power, bs_side="tx",
            users="multi", carrier_frequency_ghz=c.carrier_frequency_ghz, delay_spread_ns=c.delay_spread_ns,
            cdl_model=c.cdl_model, subcarrier_spacing_khz=c.subcarrier_spacing_khz, bandwidth_mhz=c.bandwidth_mhz,
            pathloss=False, pool=c.pool, pool_seed=c.pool_seed)

    def _draw_clustered(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        c = self.cfg
        B, NB, N, M, C, R = batch, self.n_bands, self.n_users, self.n_antennas, c.n_clusters, c.n_rays
        sector = math.radians(c.sector_deg)
        centre = (torch.rand(B, N, C, 1, generator=gen, dtype=torch.float64) - 0.5) * sector
        # Laplacian offsets with standard deviation = the angular spread
        u = torch.rand(B, N, C, R, generator=gen, dtype=torch.float64) - 0.5
        offset = -math.radians(c.angular_spread_deg) / math.sqrt(2.0) * torch.sign(u) * torch.log1p(-2 * u.abs())
        theta = centre + offset                                                     # (B, N, C, R)
        gains = complex_gaussian((B, N, C, R), gen).to(torch.complex128)
        delay = c.max_delay * torch.rand(B, N, C, generator=gen, dtype=torch.float64)
        m = torch.arange(M, dtype=torch.float64)
        steer = torch.exp(1j * 2 * math.pi * c.antenna_spacing * torch.sin(theta).unsqueeze(-1) * m)   # (B,N,C,R,M)
        per_cluster = (gains.unsqueeze(-1) * steer.conj()).sum(-2)                  # (B, N, C, M)
        b = torch.arange(NB, dtype=torch.float64)
        phase = torch.exp(-1j * 2 * math.pi * delay.unsqueeze(1) * b.view(1, NB, 1, 1) / NB)   # (B, NB, N, C)
        H = torch.einsum("bknc,bncm->bknm", phase, per_cluster) / math.sqrt(C * R)
        return H.to(torch.complex64)

    def sample(self, batch: int, seed: "int | torch.Generator", device="cpu") -> ChannelBatch:
        """``batch`` channels: H (B, n_bands, N, M) complex64, noise_var (B,) float32 (P / SNR),
        snr_db (B,) float32 uniform over the configured range."""
        if batch < 1:
            raise ConfigError(f"batch must be >= 1 (got {batch})")
        gen = as_generator(seed)
        if self.tr38901 is not None:
            # one realisation per user seen at n_bands subcarriers; the SNR drawn after H, as below
            return self.tr38901.sample_bands(batch, gen, self.n_bands, device=device)
        if self.cfg.model == "iid":
            H = complex_gaussian((batch, self.n_bands, self.n_users, self.n_antennas), gen)
        else:
            H = self._draw_clustered(batch, gen)
        lo, hi = self.snr_db
        snr_db = lo + (hi - lo) * torch.rand(batch, generator=gen)
        noise_var = self.power / torch.pow(10.0, snr_db / 10.0)
        return ChannelBatch(H, noise_var.float(), snr_db.float()).to(device)

    def band_frequencies(self) -> torch.Tensor:
        """The bands' baseband frequencies [Hz], (n_bands,) float64 (3GPP models only)."""
        if self.tr38901 is None:
            raise ConfigError(f"wideband channel {self.cfg.model}: its bands are normalised delays, not frequencies")
        return self.tr38901.band_frequencies(self.n_bands)

    def describe(self) -> dict:
        base = {"model": self.cfg.model, "n_antennas": self.n_antennas, "n_users": self.n_users, "n_bands": self.n_bands}
        if self.tr38901 is None:
            return {**base, **self.cfg.model_dump(mode="json", exclude={"model", *TR38901_FIELDS})}
        tr = self.tr38901.describe()
        keep = ("bs_array", "ue_array", "normalisation", "pool", "scenario", "topology", "o2i_model")
        ignored = {"delay_spread_ns", "cdl_model"} if self.tr38901.system_level else set()   # umi / uma draw their own
        return {**base, **self.cfg.model_dump(mode="json", exclude={"model", "pool", *CLUSTERED_FIELDS, *ignored}),
                "direction": "downlink, one single-antenna terminal per user",
                **{k: tr[k] for k in keep if k in tr}}
