"""The one interface every CSI source implements, and the seeded streams built on it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional, Tuple

import torch
from pydantic import Field, field_validator, model_validator

from ..errors import ConfigError, InputError
from ..plugins import CHANNELS
from ..schema import Schema
from ..seeding import as_generator


def ordered_range(v):
    """A (low, high) pair with low <= high (the ``snr_db`` validator of every channel section)."""
    if v[1] < v[0]:
        raise ValueError(f"must be [low, high] with low <= high, got {list(v)}")
    return v


# the ChannelConfig keys that change only the distribution of H (not its sizes, the power or which side
# is the base station): what ``training.problem`` may change (``Problem.sampling_keys``)
CHANNEL_SAMPLING_KEYS = tuple(f"channel.{k}" for k in (
    "model", "snr_db", "angular_spread_deg", "antenna_spacing", "tx_rho", "rx_rho", "carrier_frequency_ghz", "delay_spread_ns",
    "cdl_model", "subcarrier_spacing_khz", "bandwidth_mhz", "pathloss", "pool", "pool_seed"))


class ChannelConfig(Schema):
    """The ``problem.channel`` section of an experiment: which registered channel model, its sizes,
    SNR range and power, the settings of the correlated model and those of the 3GPP TR 38.901 models
    (each ignored by the other models)."""

    model: str = "correlated_rayleigh"
    n_tx: int = Field(64, ge=1)
    n_rx: int = Field(16, ge=1)
    snr_db: Tuple[float, float] = (0.0, 30.0)
    power: float = Field(1.0, gt=0)
    angular_spread_deg: float = Field(15.0, ge=0, le=90)
    antenna_spacing: float = Field(0.5, gt=0)
    tx_rho: Optional[float] = Field(None, ge=0, lt=1)
    """correlated_rayleigh: the transmit correlation coefficient itself (None: from the angular spread and
    spacing). 0 makes the transmit side uncorrelated, e.g. an uplink's independent single-antenna users."""
    rx_rho: Optional[float] = Field(None, ge=0, lt=1)
    # the 3GPP TR 38.901 sources (umi, uma, cdl, tdl; see channels/tr38901.py); ignored by the others
    bs_side: Literal["tx", "rx"] = "tx"
    """Which dimension of H is the base-station array: tx (downlink, columns) or rx (uplink, rows)."""
    users: Literal["single", "multi"] = "single"
    """The UE-side dimension is one multi-antenna terminal (single) or that many single-antenna users (multi)."""
    carrier_frequency_ghz: float = Field(3.5, ge=0.5, le=100)
    delay_spread_ns: float = Field(100.0, gt=0, le=10000)
    """RMS delay spread of cdl / tdl (umi / uma draw their own)."""
    cdl_model: Literal["A", "B", "C", "D", "E"] = "C"
    """Profile letter of cdl and tdl."""
    subcarrier_spacing_khz: float = Field(30.0, gt=0)
    bandwidth_mhz: float = Field(20.0, gt=0, le=2000)
    """The span multi-band draws (``sample_bands``) spread their bands over."""
    pathloss: bool = False
    """umi / uma: keep path loss, O2I loss and shadow fading (off: H normalised to E|H_ij|^2 = 1)."""
    pool: Optional[int] = Field(None, ge=0)
    """User-terminal realisations pooled once and resampled (None: automatic size, 0: fresh draws)."""
    pool_seed: int = 0

    _registered = field_validator("model")(lambda v: CHANNELS.validate(v))
    _ordered = field_validator("snr_db")(ordered_range)

    @model_validator(mode="after")
    def _band_holds_a_subcarrier(self):
        if self.bandwidth_mhz * 1e3 < self.subcarrier_spacing_khz:
            raise ValueError(f"bandwidth_mhz={self.bandwidth_mhz} holds no subcarrier of "
                             f"subcarrier_spacing_khz={self.subcarrier_spacing_khz}")
        if self.pathloss and getattr(CHANNELS.get(self.model), "system_level", None) is False:
            raise ValueError(f"pathloss=True needs a system-level model with a geometry (umi, uma); "
                             f"{self.model} has no path loss")
        return self


def build_channel(cfg: ChannelConfig) -> "ChannelSource":
    """The registered source ``cfg.model`` built from its config."""
    return CHANNELS.get(cfg.model).from_config(cfg)


@dataclass
class ChannelBatch:
    """A batch of channel realisations.

    Attributes:
        H: (B, n_rx, n_tx) complex64 channel matrices.
        noise_var: (B,) float32 noise variance per sample (transmit power P = 1 unless the
            problem says otherwise, so ``noise_var = P / SNR``).
        snr_db: (B,) float32 SNR each sample was drawn at.
        row_energy: (B, n_rx) float32 squared norms of the rows of H where the input check measured
            them (``check_channel`` returns them; the beamformer's matched-filter start reuses them
            instead of reading H once more), else None. They describe this H: code that builds a
            batch with another H (a channel estimate, a perturbation) must not carry them over.
        derived: what a problem computed from this batch's H and noise_var, kept as long as the batch
            object (MU-MISO: the Gram matrix and RZF's inverse, shared by its start and its conditioning
            feature), by name; starts empty. Not an argument: a new batch (``to``, indexing,
            ``dataclasses.replace``) starts without it, so it never outlives its H. Code that changes H or
            noise_var in place must clear it; code that times calls must give each call a new batch
            (``inst[:]``), or the later calls skip that work.
    """

    H: torch.Tensor
    noise_var: torch.Tensor
    snr_db: torch.Tensor
    row_energy: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def to(self, device) -> "ChannelBatch":
        energy = None if self.row_energy is None else self.row_energy.to(device)
        return ChannelBatch(self.H.to(device), self.noise_var.to(device), self.snr_db.to(device), energy)

    @property
    def batch_size(self) -> int:
        return self.H.shape[0]

    def __getitem__(self, idx) -> "ChannelBatch":
        energy = None if self.row_energy is None else self.row_energy[idx]
        return ChannelBatch(self.H[idx], self.noise_var[idx], self.snr_db[idx], energy)


def check_channel(H: torch.Tensor, noise_var: torch.Tensor, n_tx: int | None = None) -> torch.Tensor:
    """Raise ``InputError`` unless H is (B, n_rx, n_tx) complex and finite and noise_var (B,) > 0.

    Returns the squared row norms of H, (B, n_rx) in H's real dtype (the one pass over H that the
    finiteness check needs; inf where a finite row's squared norm overflows)."""
    if not isinstance(H, torch.Tensor) or not H.is_complex():
        raise InputError(f"H must be a complex tensor of shape (B, n_rx, n_tx), got "
                         f"{getattr(H, 'dtype', type(H).__name__)}")
    if H.dim() != 3:
        raise InputError(f"H must have shape (B, n_rx, n_tx), got {tuple(H.shape)}")
    if n_tx is not None and H.shape[-1] != n_tx:
        raise InputError(f"H has n_tx={H.shape[-1]} columns but the model was built for n_tx={n_tx}")
    if not isinstance(noise_var, torch.Tensor) or noise_var.shape != (H.shape[0],):
        raise InputError(f"noise_var must be a tensor of shape ({H.shape[0]},), got "
                         f"{tuple(getattr(noise_var, 'shape', ()))}")
    # one fused reduction first (a NaN or Inf anywhere makes its row's norm non-finite); the
    # element-wise check, 10x dearer, runs only then, so that a norm that merely overflowed is not
    # taken for a bad entry
    re_im = torch.view_as_real(H.resolve_conj())
    energy = torch.linalg.vector_norm(re_im, dim=(-2, -1)).square()
    # the tests read detached values (a differentiable H or noise_var stays differentiable, unwarned)
    if not math.isfinite(energy.detach().sum()) and not bool(torch.isfinite(re_im.detach()).all()):
        raise InputError("H contains NaN or Inf")
    # one reduction for both tests (a NaN anywhere makes both extremes NaN, and NaN > 0 is False)
    if noise_var.numel():
        low, high = torch.aminmax(noise_var.detach())
        if not (float(low) > 0 and float(high) < math.inf):
            raise InputError("noise_var must be finite and > 0 (a negative SNR in dB is fine; a negative variance is not)")
    return energy


class ChannelSource:
    """Base class of CSI sources.

    Subclasses implement ``_draw_h(batch, gen) -> (B, n_rx, n_tx) complex64`` on the CPU; SNR
    drawing, device placement and validation live here once.

    Args:
        n_tx, n_rx: antenna counts.
        snr_db: (low, high) range; each sample's SNR is uniform in dB over it.
        power: total transmit power P; ``noise_var = P / 10**(snr_db/10)``.
    """

    name = "base"

    def __init__(self, n_tx: int, n_rx: int, snr_db: Tuple[float, float] = (0.0, 30.0), power: float = 1.0):
        if n_tx < 1 or n_rx < 1:
            raise ConfigError(f"{self.name}: n_tx and n_rx must be >= 1 (got n_tx={n_tx}, n_rx={n_rx})")
        lo, hi = snr_db
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
            raise ConfigError(f"{self.name}: snr_db must be [low, high] with low <= high (got {list(snr_db)})")
        if not power > 0:
            raise ConfigError(f"{self.name}: power must be > 0 (got {power})")
        self.n_tx, self.n_rx, self.snr_db, self.power = int(n_tx), int(n_rx), (float(lo), float(hi)), float(power)

    def _draw_h(self, batch: int, gen: torch.Generator) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, batch: int, seed: "int | torch.Generator", device="cpu") -> ChannelBatch:
        """Draw ``batch`` channels.

        Args:
            batch: number of realisations B.
            seed: an int seed or a CPU ``torch.Generator`` (advanced by the call).
            device: where the returned tensors live.
        Returns:
            ChannelBatch with H (B, n_rx, n_tx) complex64, noise_var (B,) float32, snr_db (B,) float32.
        """
        if batch < 1:
            raise ConfigError(f"batch must be >= 1 (got {batch})")
        gen = as_generator(seed)
        H = self._draw_h(batch, gen)
        lo, hi = self.snr_db
        snr_db = lo + (hi - lo) * torch.rand(batch, generator=gen)
        noise_var = self.power / torch.pow(10.0, snr_db / 10.0)
        return ChannelBatch(H.to(torch.complex64), noise_var.float(), snr_db.float()).to(device)

    @classmethod
    def from_config(cls, cfg: "ChannelConfig") -> "ChannelSource":
        return cls(n_tx=cfg.n_tx, n_rx=cfg.n_rx, snr_db=tuple(cfg.snr_db), power=cfg.power)

    def describe(self) -> dict:
        return {"model": self.name, "n_tx": self.n_tx, "n_rx": self.n_rx, "snr_db": list(self.snr_db)}


def complex_gaussian(shape, gen: torch.Generator) -> torch.Tensor:
    """i.i.d. CN(0, 1) samples (unit variance), complex64, on the CPU."""
    re_im = torch.randn(*shape, 2, generator=gen) * math.sqrt(0.5)
    return torch.view_as_complex(re_im)
