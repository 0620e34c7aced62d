"""Multi-band (frequency-selective) channels for problems that precode over several bands at once
(hybrid precoding): H (B, n_bands, n_users, n_antennas) complex64.

Two models, named in the ``problem.channel.model`` of such a problem:

| model | what |
|---|---|
| ``clustered`` | a clustered multipath (Saleh-Valenzuela-type) model on a half-wavelength ULA: per user C clusters of R rays, cluster angles uniform over the sector, ray angles Laplacian around them (``angular_spread_deg``), one delay per cluster uniform in [0, ``max_delay``] samples of 1/bandwidth, so band b sees the phase exp(-j 2 pi b tau / n_bands): bands are correlated as much as the delays allow |
| ``iid`` | i.i.d. CN(0, 1) entries, independent across bands (the control: no structure to exploit) |

Both have E|H_b[n, m]|^2 = 1, so the SNR is P / noise_var. Draws are pure functions of the
generator (CPU), like every ``ChannelSource``.
"""
from __future__ import annotations

import math
from typing import Literal, Tuple

import torch
from pydantic import Field, field_validator

from ..errors import ConfigError, InputError
from ..schema import Schema
from ..seeding import as_generator
from .base import ChannelBatch, complex_gaussian, ordered_range

WIDEBAND_MODELS = ("clustered", "iid")


class WidebandConfig(Schema):
    """The ``problem.channel`` section of a multi-band problem. Sizes (antennas, users, bands) live
    in the problem section; this holds the model, the SNR range, the power and the clustered model's
    settings (ignored by ``iid``)."""

    model: Literal["clustered", "iid"] = "clustered"
    snr_db: Tuple[float, float] = (0.0, 20.0)
    power: float = Field(1.0, gt=0)
    n_clusters: int = Field(4, ge=1, le=64)
    n_rays: int = Field(5, ge=1, le=64)
    angular_spread_deg: float = Field(10.0, ge=0, le=90)
    sector_deg: float = Field(120.0, gt=0, le=180)
    max_delay: float = Field(4.0, ge=0)
    antenna_spacing: float = Field(0.5, gt=0)

    _ordered = field_validator("snr_db")(ordered_range)


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
        if self.cfg.model == "iid":
            H = complex_gaussian((batch, self.n_bands, self.n_users, self.n_antennas), gen)
        else:
            H = self._draw_clustered(batch, gen)
        lo, hi = self.snr_db
        snr_db = lo + (hi - lo) * torch.rand(batch, generator=gen)
        noise_var = self.power / torch.pow(10.0, snr_db / 10.0)
        return ChannelBatch(H, noise_var.float(), snr_db.float()).to(device)

    def describe(self) -> dict:
        return {"model": self.cfg.model, "n_antennas": self.n_antennas, "n_users": self.n_users,
                "n_bands": self.n_bands, **self.cfg.model_dump(mode="json", exclude={"model"})}
