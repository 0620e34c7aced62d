"""Rayleigh fading sources: i.i.d. and exponentially correlated (Kronecker model)."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..errors import ConfigError
from ..plugins import CHANNELS
from .base import ChannelSource, complex_gaussian


def exponential_correlation(n: int, rho: float) -> torch.Tensor:
    """R[i, j] = rho**|i-j|, (n, n) float64."""
    idx = torch.arange(n, dtype=torch.float64)
    return torch.pow(torch.tensor(rho, dtype=torch.float64), (idx[:, None] - idx[None, :]).abs())


def correlation_coefficient(angular_spread_deg: float, antenna_spacing: float) -> float:
    """rho = exp(-2 (pi d sin(angular spread))^2), d in wavelengths (the seed article's model)."""
    return math.exp(-2.0 * (math.pi * antenna_spacing * math.sin(math.radians(angular_spread_deg))) ** 2)


@CHANNELS.register
class IIDRayleigh(ChannelSource):
    """H with i.i.d. CN(0, 1) entries."""

    name = "iid_rayleigh"

    def _draw_h(self, batch, gen):
        return complex_gaussian((batch, self.n_rx, self.n_tx), gen)


@CHANNELS.register
class CorrelatedRayleigh(ChannelSource):
    """Exponentially correlated Rayleigh fading: H = L_rx H_iid L_tx^H.

    R_tx[i, j] = rho_tx**|i-j| with rho_tx = exp(-2 (pi d sin(angular_spread))^2), L_tx its Cholesky
    factor (each row of H has covariance R_tx). Zero spread is rho_tx = 1: every column of H the same
    up to a scale (rank one), which a transmit array may see but independent single-antenna users (the
    columns of an uplink H) never do: ``tx_rho`` sets rho_tx directly (0: uncorrelated). Optional
    receive correlation ``rx_rho`` uses the same exponential model on the receive side.

    Args:
        angular_spread_deg: transmit angular spread in degrees (article default 15).
        antenna_spacing: element spacing in wavelengths (default 0.5).
        tx_rho: transmit correlation coefficient in [0, 1), or None for the one of the angular spread.
        rx_rho: receive correlation coefficient in [0, 1), or None for uncorrelated receive antennas.
    """

    name = "correlated_rayleigh"

    def __init__(self, n_tx: int, n_rx: int, snr_db: Tuple[float, float] = (0.0, 30.0), power: float = 1.0,
                 angular_spread_deg: float = 15.0, antenna_spacing: float = 0.5, rx_rho: Optional[float] = None,
                 tx_rho: Optional[float] = None):
        super().__init__(n_tx, n_rx, snr_db, power)
        if not 0.0 <= angular_spread_deg <= 90.0:
            raise ConfigError(f"{self.name}: angular_spread_deg must be in [0, 90] (got {angular_spread_deg})")
        if not antenna_spacing > 0:
            raise ConfigError(f"{self.name}: antenna_spacing must be > 0 wavelengths (got {antenna_spacing})")
        for key, rho in (("tx_rho", tx_rho), ("rx_rho", rx_rho)):
            if rho is not None and not 0.0 <= rho < 1.0:
                raise ConfigError(f"{self.name}: {key} must be in [0, 1) (got {rho})")
        self.angular_spread_deg, self.antenna_spacing, self.rx_rho = angular_spread_deg, antenna_spacing, rx_rho
        self.tx_rho = tx_rho
        self.rho = correlation_coefficient(angular_spread_deg, antenna_spacing) if tx_rho is None else tx_rho
        self.L_tx = self._cholesky(n_tx, self.rho)
        self.L_rx = None if rx_rho is None else self._cholesky(n_rx, rx_rho)

    @classmethod
    def from_config(cls, cfg):
        return cls(n_tx=cfg.n_tx, n_rx=cfg.n_rx, snr_db=tuple(cfg.snr_db), power=cfg.power,
                   angular_spread_deg=cfg.angular_spread_deg, antenna_spacing=cfg.antenna_spacing, rx_rho=cfg.rx_rho,
                   tx_rho=cfg.tx_rho)

    @staticmethod
    def _cholesky(n: int, rho: float) -> torch.Tensor:
        # rho = 1 (zero spread) is rank one; a tiny diagonal load keeps the factor defined.
        R = exponential_correlation(n, rho) + 1e-9 * torch.eye(n, dtype=torch.float64)
        return torch.linalg.cholesky(R).to(torch.complex64)

    def _draw_h(self, batch, gen):
        H = complex_gaussian((batch, self.n_rx, self.n_tx), gen) @ self.L_tx.mH
        if self.L_rx is not None:
            H = self.L_rx @ H
        return H

    def describe(self):
        return {**super().describe(), "angular_spread_deg": self.angular_spread_deg,
                "antenna_spacing": self.antenna_spacing, "tx_rho": self.tx_rho, "rx_rho": self.rx_rho, "rho_tx": self.rho}
