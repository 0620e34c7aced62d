"""3GPP TR 38.901 channel sources drawn through Sionna (``sionna.phy.channel.tr38901``, PyTorch backend).

| model | what |
|---|---|
| ``umi`` | urban micro street canyon (system-level :class:`~sionna.phy.channel.tr38901.UMi`), each user terminal dropped on its own in a single 120-degree sector (``gen_single_sector_topology``, 3GPP default heights, distances, 80 % indoor, random UT orientation, random LoS state) |
| ``uma`` | urban macro (:class:`~sionna.phy.channel.tr38901.UMa`), same drop |
| ``cdl`` | clustered delay line CDL-A..E (``cdl_model``), link level: fixed cluster angles/delays scaled by ``delay_spread_ns``, random ray coupling and phases |
| ``tdl`` | tapped delay line TDL-A..E (``cdl_model`` picks the letter too), antennas spatially uncorrelated (the TDL models have no array model): a frequency-selective, spatially i.i.d. control |

Arrays. The base station (BS) is a ULA: ``PanelArray`` with one row of ``n_bs`` single-polarised (V) elements
at half-wavelength spacing and the TR 38.901 sector element pattern (Table 7.3-1, 8 dBi, 65 degree beam);
a user terminal (UE) is a ULA of single-polarised (V) omnidirectional elements.

Orientation. The platform's H is (B, n_rx, n_tx):

* ``bs_side="tx"`` (downlink: beamforming, MU-MISO): the BS array is the n_tx columns, the UE side the n_rx rows
  (Sionna ``direction="downlink"``);
* ``bs_side="rx"`` (uplink: detection): the BS array is the n_rx rows, the UE side the n_tx columns
  (``direction="uplink"``);
* ``users="single"``: the UE side is ONE terminal with that many antennas (SU-MIMO, beamforming);
  ``users="multi"``: that many single-antenna terminals, each dropped (umi/uma) or drawn (cdl/tdl)
  independently: one row (downlink) or column (uplink) per user. All four combinations are served.
  With ``cdl`` every user shares the CDL's fixed cluster angles (it is a link-level model), so users differ
  by their ray phases and coupling only: like correlated Rayleigh, the same spatial covariance for everyone.

Normalisation (``pathloss=False``, the default; the platform's SNR is P / noise_var, which needs
E|H_ij|^2 = 1):

* ``umi``/``uma``: path loss, O2I loss and shadow fading are off, and each user terminal's impulse
  response is scaled so that its wideband power sum_p |a_p|^2, averaged over its antennas and the BS
  antennas, is 1. This removes each user's large-scale gain (BS element pattern towards that user,
  polarisation mismatch of the randomly oriented UE; otherwise several dB between users) and the
  fluctuation of the frequency-averaged power, and keeps the small-scale fading: the H at one
  subcarrier fades across antennas, subcarriers and users, E|H_ij(f)|^2 = 1 at every f.
* ``cdl``: the cluster angles are fixed, so the large-scale gain is one constant: H is divided by the
  square root of the mean element-pair power measured once on a fixed-seed calibration draw of 2048
  single-element links (within ~1 %; once per process and setting).
* ``tdl``: the model's own normalisation (the power delay profile sums to 1, unit-gain antennas).

Measured mean |H_ij|^2 (512 users, 8 BS antennas, seeds 12-14): umi 0.99-1.01, uma 0.95-1.05,
cdl 0.97-0.98, tdl 1.00-1.01.
``pathloss=True`` (umi/uma only) returns the physical channel with path loss, O2I loss and shadow fading
(measured per-user |H|^2 1e-7..1e-15 for umi, 1e-8..1e-17 for uma): the caller must scale noise_var to match.

Frequency. ``sample`` returns the frequency response at the carrier (the centre subcarrier, f = 0 in
baseband); ``sample_bands`` returns it at ``n_bands`` subcarriers equally spaced over ``bandwidth_mhz``
(band centres snapped to the ``subcarrier_spacing_khz`` grid of ``subcarrier_frequencies``), all from the
same realisation. ``h(f) = sum_p a_p exp(-j 2 pi f tau_p)``, what ``cir_to_ofdm_channel`` computes
(the tests check the two agree). A single time sample is drawn, so UE speed (Doppler) plays no role.

Seeding. Sionna draws from its own generator ``sionna.phy.config.torch_rng("cpu")``. A draw seeds it
with an integer taken from the platform's ``torch.Generator`` and restores its previous state
afterwards (``config.seed = s`` is not used: it would also reseed the global torch RNG). Draws are
on the CPU in single precision and are pure functions of the generator.

Cost and the pool. Measured (this 2-core machine, OMP_NUM_THREADS=1, a benchmark running beside it),
one FRESH draw (``pool=0``) of B = 256, H (B, n_rx, n_tx), n_tx x n_rx given as BS x UE side:

| size | umi | cdl | tdl |
|---|---|---|---|
| 8x8 detection (bs_side=rx, multi) | 2.3 s | 3.0 s | 0.24 s |
| 16x8 MU-MISO (bs_side=tx, multi) | 3.4 s | 3.8 s | 0.43 s |
| 64x16 MU-MISO (tx, multi) | 20-37 s | 43 s | 4.2 s |
| 64x16 beamforming (tx, single) | 10-12 s | 12-13 s | 4.0 s |

(uma costs as umi; a 16-band draw costs the same.) That is far too slow for training that draws a batch
every step, so by default (``pool=None``) a source draws a pool of P user-terminal impulse responses once,
P = max(256, ceil(2048 / UE antennas per terminal)) (at least 2048 links of the BS array), from
``pool_seed``, and builds every batch from it with the generator: each user of each sample is a pool
entry picked uniformly with replacement, times a uniform random phase exp(j phi) (a symmetry of these
models: the ray phases are uniform). Multi-user batches are thus fresh combinations of pooled users.
Measured (umi): building the pool 2.2 s (8x8), 3.3 s (16x8), 10 s (64x16 multi, P = 2048), 11 s
(64x16 single, P = 256); then a draw of 256 takes 4-80 ms (16 bands: 30-180 ms). The pool is built
lazily at the first draw and kept per process (the 4 most recent settings). Training, validation and
test draws share the P pooled user channels: use another ``pool_seed`` (or ``pool=0``) for an
evaluation that must be disjoint. ``pool=0`` draws fresh realisations every call.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager
from typing import Optional, Tuple

import torch

from ..errors import ConfigError
from ..plugins import CHANNELS
from ..seeding import as_generator, derive_seed
from .base import ChannelBatch, ChannelSource

BS_SIDES = ("tx", "rx")
USERS = ("single", "multi")
PROFILES = ("A", "B", "C", "D", "E")
POOL_LINKS = 2048          # the auto pool holds this many BS-array links ...
POOL_MIN_TERMINALS = 256   # ... and at least this many user terminals
_CHUNK_LINKS = 4096        # links per Sionna call (bounds memory)
_POOL_CACHE: "OrderedDict[tuple, Tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_POOL_CACHE_SIZE = 4
_CDL_SCALE: dict = {}
_CDL_CALIBRATION_LINKS = 2048


@contextmanager
def sionna_seeded(seed: int):
    """Run Sionna draws from ``seed``: seeds Sionna's CPU generator and restores its state on exit
    (the global torch generator is left untouched)."""
    from sionna.phy import config
    g = config.torch_rng("cpu")
    state = g.get_state()
    g.manual_seed(int(seed))
    try:
        yield
    finally:
        g.set_state(state)


def _panel(n: int, pattern: str, carrier_frequency: float):
    from sionna.phy.channel.tr38901 import PanelArray
    return PanelArray(num_rows_per_panel=1, num_cols_per_panel=int(n), polarization="single",
                      polarization_type="V", antenna_pattern=pattern, carrier_frequency=carrier_frequency,
                      precision="single", device="cpu")


def frequency_response(a: torch.Tensor, tau: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """h(f) = sum_p a_p exp(-j 2 pi f tau_p) (what ``cir_to_ofdm_channel`` computes, with the delays
    shared by all antenna pairs of a link).

    Args:
        a: (N, A, M, P) complex64 path coefficients (UE antennas A, BS antennas M, paths P).
        tau: (N, P) float32 path delays [s].
        freqs: (F,) baseband frequencies [Hz].
    Returns:
        (N, F, A, M) complex64.
    """
    phase = -2.0 * math.pi * tau.double().unsqueeze(-1) * freqs.double().view(1, 1, -1)      # (N, P, F)
    e = torch.polar(torch.ones_like(phase), phase).to(torch.complex64)
    return torch.einsum("namp,npf->nfam", a, e)


class TR38901Source(ChannelSource):
    """Base of the 3GPP TR 38.901 sources (see the module docstring for arrays, orientation,
    normalisation, seeding and the pool).

    Args:
        n_tx, n_rx: antenna counts of H (B, n_rx, n_tx); the BS array is the ``bs_side`` dimension.
        snr_db, power: as for every source (noise_var = power / SNR).
        bs_side: ``"tx"`` (downlink, BS = columns) or ``"rx"`` (uplink, BS = rows).
        users: ``"single"`` (one terminal with all UE-side antennas) or ``"multi"`` (single-antenna users).
        carrier_frequency_ghz: carrier frequency [GHz], 0.5..100 (the range of TR 38.901).
        delay_spread_ns: RMS delay spread [ns] of ``cdl``/``tdl`` (umi/uma draw their own).
        cdl_model: profile letter A..E of ``cdl`` and ``tdl``.
        subcarrier_spacing_khz: subcarrier spacing [kHz] of the band grid.
        bandwidth_mhz: default bandwidth [MHz] ``sample_bands`` spreads its bands over (<= 2000).
        pathloss: umi/uma only; True keeps path loss, O2I loss and shadow fading (no normalisation).
        pool: user terminals kept in the pool; None: automatic, 0: fresh draws every call.
        pool_seed: seed of the pool.
    """

    name = "tr38901"
    system_level = False

    def __init__(self, n_tx: int, n_rx: int, snr_db: Tuple[float, float] = (0.0, 30.0), power: float = 1.0, *,
                 bs_side: str = "tx", users: str = "single", carrier_frequency_ghz: float = 3.5,
                 delay_spread_ns: float = 100.0, cdl_model: str = "C", subcarrier_spacing_khz: float = 30.0,
                 bandwidth_mhz: float = 20.0, pathloss: bool = False, pool: Optional[int] = None,
                 pool_seed: int = 0):
        super().__init__(n_tx, n_rx, snr_db, power)
        n = self.name
        if bs_side not in BS_SIDES:
            raise ConfigError(f"{n}: bs_side must be one of {list(BS_SIDES)} (got {bs_side!r})")
        if users not in USERS:
            raise ConfigError(f"{n}: users must be one of {list(USERS)} (got {users!r})")
        if not (isinstance(carrier_frequency_ghz, (int, float)) and 0.5 <= carrier_frequency_ghz <= 100.0):
            raise ConfigError(f"{n}: carrier_frequency_ghz must be in [0.5, 100] (TR 38.901) (got {carrier_frequency_ghz})")
        if not (isinstance(delay_spread_ns, (int, float)) and 0.0 < delay_spread_ns <= 10000.0):
            raise ConfigError(f"{n}: delay_spread_ns must be in (0, 10000] (got {delay_spread_ns})")
        if cdl_model not in PROFILES:
            raise ConfigError(f"{n}: cdl_model must be one of {list(PROFILES)} (got {cdl_model!r})")
        if not (isinstance(subcarrier_spacing_khz, (int, float)) and subcarrier_spacing_khz > 0):
            raise ConfigError(f"{n}: subcarrier_spacing_khz must be > 0 (got {subcarrier_spacing_khz})")
        if not (isinstance(bandwidth_mhz, (int, float)) and 0.0 < bandwidth_mhz <= 2000.0):
            raise ConfigError(f"{n}: bandwidth_mhz must be in (0, 2000] (got {bandwidth_mhz})")
        if bandwidth_mhz * 1e3 < subcarrier_spacing_khz:
            raise ConfigError(f"{n}: bandwidth_mhz={bandwidth_mhz} holds no subcarrier of "
                              f"subcarrier_spacing_khz={subcarrier_spacing_khz}")
        if not isinstance(pathloss, bool):
            raise ConfigError(f"{n}: pathloss must be true or false (got {pathloss!r})")
        if pathloss and not self.system_level:
            raise ConfigError(f"{n}: pathloss=True needs a system-level model with a geometry (umi, uma); "
                              f"{n} has no path loss")
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 0):
            raise ConfigError(f"{n}: pool must be None (automatic), 0 (fresh draws) or a count > 0 (got {pool!r})")
        if isinstance(pool_seed, bool) or not isinstance(pool_seed, int):
            raise ConfigError(f"{n}: pool_seed must be an integer (got {pool_seed!r})")
        self.bs_side, self.users = bs_side, users
        self.carrier_frequency_ghz, self.delay_spread_ns = float(carrier_frequency_ghz), float(delay_spread_ns)
        self.cdl_model, self.subcarrier_spacing_khz = cdl_model, float(subcarrier_spacing_khz)
        self.bandwidth_mhz, self.pathloss, self.pool_seed = float(bandwidth_mhz), pathloss, int(pool_seed)
        # BS antennas M; UE side: T terminals of A antennas each (T * A = the UE-side dimension)
        self.n_bs, self.n_ue = (n_tx, n_rx) if bs_side == "tx" else (n_rx, n_tx)
        self.n_terminals, self.ue_antennas = (1, self.n_ue) if users == "single" else (self.n_ue, 1)
        self.pool = (max(POOL_MIN_TERMINALS, math.ceil(POOL_LINKS / self.ue_antennas)) if pool is None
                     else int(pool))
        self._model = None
        self._scale = 1.0

    @classmethod
    def from_config(cls, cfg):
        return cls(n_tx=cfg.n_tx, n_rx=cfg.n_rx, snr_db=tuple(cfg.snr_db), power=cfg.power, bs_side=cfg.bs_side,
                   users=cfg.users, carrier_frequency_ghz=cfg.carrier_frequency_ghz,
                   delay_spread_ns=cfg.delay_spread_ns, cdl_model=cfg.cdl_model,
                   subcarrier_spacing_khz=cfg.subcarrier_spacing_khz, bandwidth_mhz=cfg.bandwidth_mhz,
                   pathloss=cfg.pathloss, pool=cfg.pool, pool_seed=cfg.pool_seed)

    @property
    def carrier_frequency(self) -> float:
        return self.carrier_frequency_ghz * 1e9

    @property
    def direction(self) -> str:
        return "downlink" if self.bs_side == "tx" else "uplink"

    # -- impulse responses -------------------------------------------------------------------------

    def _sionna_cir(self, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n`` independent terminal links from the Sionna model (its generator already seeded):
        a (n, A, M, P) complex64, tau (n, P) float32, before normalisation."""
        raise NotImplementedError

    @staticmethod
    def _canonical(a: torch.Tensor, tau: torch.Tensor, direction: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sionna's a [n, num_rx=1, rx_ant, num_tx=1, tx_ant, P, 1] and tau [n, 1, 1, P] to a (n, A, M, P),
        tau (n, P) with A the UE antennas and M the BS antennas."""
        a = a[:, 0, :, 0, :, :, 0]                          # (n, rx_ant, tx_ant, P)
        if direction == "uplink":                           # rx = BS, tx = UE
            a = a.transpose(1, 2)
        return a.to(torch.complex64).contiguous(), tau[:, 0, 0, :].float().contiguous()

    def _normalise(self, a: torch.Tensor) -> torch.Tensor:
        if self.pathloss:
            return a
        return a / self._scale

    def _cir(self, n: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n`` terminal links drawn from ``seed``, normalised: a (n, A, M, P) complex64, tau (n, P)."""
        per_call = max(1, _CHUNK_LINKS // max(1, self.ue_antennas * max(1, self.n_bs // 8)))
        parts_a, parts_tau = [], []
        with sionna_seeded(seed):
            done = 0
            while done < n:
                k = min(per_call, n - done)
                a, tau = self._sionna_cir(k)
                parts_a.append(self._normalise(a))
                parts_tau.append(tau)
                done += k
        p = max(x.shape[-1] for x in parts_tau)             # paths can differ between calls (LoS / NLoS)
        a = torch.cat([torch.nn.functional.pad(x, (0, p - x.shape[-1])) for x in parts_a])
        tau = torch.cat([torch.nn.functional.pad(x, (0, p - x.shape[-1])) for x in parts_tau])
        return a, tau

    def _pool(self) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (type(self).__name__, self.direction, self.n_bs, self.ue_antennas, self.carrier_frequency_ghz,
               self.delay_spread_ns, self.cdl_model, self.pathloss, self.pool, self.pool_seed)
        if key in _POOL_CACHE:
            _POOL_CACHE.move_to_end(key)
            return _POOL_CACHE[key]
        entry = self._cir(self.pool, derive_seed(self.pool_seed, "tr38901-pool", self.name))
        _POOL_CACHE[key] = entry
        while len(_POOL_CACHE) > _POOL_CACHE_SIZE:
            _POOL_CACHE.popitem(last=False)
        return entry

    def _terminals(self, batch: int, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """batch * T terminal links: a (batch * T, A, M, P), tau (batch * T, P)."""
        n = batch * self.n_terminals
        if self.pool == 0:
            return self._cir(n, int(torch.randint(0, 2**62, (1,), generator=gen)))
        a, tau = self._pool()
        idx = torch.randint(0, a.shape[0], (n,), generator=gen)
        phi = 2.0 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
        rot = torch.polar(torch.ones_like(phi), phi).to(torch.complex64).view(n, 1, 1, 1)
        return a[idx] * rot, tau[idx]

    # -- frequency grid ----------------------------------------------------------------------------

    def band_frequencies(self, n_bands: int, bandwidth_mhz: Optional[float] = None) -> torch.Tensor:
        """Baseband frequencies [Hz] of ``n_bands`` subcarriers equally spaced over the bandwidth.

        Band k's centre ``(k - (n_bands - 1) / 2) * bandwidth / n_bands`` is snapped to the nearest
        subcarrier of ``subcarrier_frequencies(bandwidth / spacing, spacing)``; one band is the
        centre subcarrier (f = 0).

        Returns:
            (n_bands,) float64.
        """
        from sionna.phy.channel import subcarrier_frequencies
        bw = self.bandwidth_mhz if bandwidth_mhz is None else bandwidth_mhz
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
            raise ConfigError(f"{self.name}: n_bands must be an integer >= 1 (got {n_bands!r})")
        if not (isinstance(bw, (int, float)) and 0.0 < bw <= 2000.0):
            raise ConfigError(f"{self.name}: bandwidth_mhz must be in (0, 2000] (got {bw})")
        scs = self.subcarrier_spacing_khz * 1e3
        n_sc = int(math.floor(bw * 1e6 / scs + 1e-9))
        if n_bands > n_sc:
            raise ConfigError(f"{self.name}: n_bands={n_bands} exceeds the {n_sc} subcarriers of "
                              f"bandwidth_mhz={bw} at subcarrier_spacing_khz={self.subcarrier_spacing_khz}")
        grid = subcarrier_frequencies(n_sc, scs, precision="double", device="cpu")
        centre = n_sc // 2                                  # index of f = 0
        k = torch.arange(n_bands, dtype=torch.float64)
        offset = torch.round((k - (n_bands - 1) / 2.0) * (bw * 1e6 / n_bands) / scs).long()
        return grid[(centre + offset).clamp(0, n_sc - 1)]

    # -- draws -------------------------------------------------------------------------------------

    def _draw(self, batch: int, gen: torch.Generator, freqs: torch.Tensor) -> torch.Tensor:
        """H (B, F, n_rx, n_tx) complex64 at the baseband frequencies ``freqs`` (F,)."""
        a, tau = self._terminals(batch, gen)
        h = frequency_response(a, tau, freqs)               # (B * T, F, A, M)
        F = h.shape[1]
        h = h.view(batch, self.n_terminals, F, self.ue_antennas, self.n_bs).transpose(1, 2)
        h = h.reshape(batch, F, self.n_ue, self.n_bs)       # UE rows, BS columns
        if self.bs_side == "rx":
            h = h.transpose(-1, -2)
        return h.contiguous()

    def _draw_h(self, batch, gen):
        """H (B, n_rx, n_tx) complex64 at the carrier (the centre subcarrier)."""
        return self._draw(batch, gen, torch.zeros(1, dtype=torch.float64))[:, 0].contiguous()

    def sample_bands(self, batch: int, seed: "int | torch.Generator", n_bands: int,
                     bandwidth_mhz: Optional[float] = None, device="cpu") -> ChannelBatch:
        """Draw ``batch`` multi-band channels: one realisation seen at ``n_bands`` subcarriers.

        Args:
            batch: number of realisations B.
            seed: an int seed or a CPU ``torch.Generator`` (advanced by the call).
            n_bands: number of bands F (equally spaced subcarriers, see ``band_frequencies``).
            bandwidth_mhz: the span [MHz]; None: the configured ``bandwidth_mhz``.
            device: where the returned tensors live.
        Returns:
            ChannelBatch with H (B, n_bands, n_rx, n_tx) complex64, noise_var (B,) float32,
            snr_db (B,) float32. With ``n_bands=1`` and the same seed, H[:, 0] equals ``sample``'s H.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch must be >= 1 (got {batch})")
        freqs = self.band_frequencies(n_bands, bandwidth_mhz)
        gen = as_generator(seed)
        H = self._draw(batch, gen, freqs)
        lo, hi = self.snr_db
        snr_db = lo + (hi - lo) * torch.rand(batch, generator=gen)
        noise_var = self.power / torch.pow(10.0, snr_db / 10.0)
        return ChannelBatch(H, noise_var.float(), snr_db.float()).to(device)

    def describe(self) -> dict:
        return {**super().describe(), "bs_side": self.bs_side, "users": self.users,
                "n_bs": self.n_bs, "ue_terminals": self.n_terminals, "ue_antennas": self.ue_antennas,
                "carrier_frequency_ghz": self.carrier_frequency_ghz,
                "subcarrier_spacing_khz": self.subcarrier_spacing_khz, "bandwidth_mhz": self.bandwidth_mhz,
                "bs_array": f"ULA 1x{self.n_bs}, 0.5 wavelength, single-pol V, 38.901 element pattern",
                "ue_array": f"ULA 1x{self.ue_antennas}, 0.5 wavelength, single-pol V, omni",
                "pathloss": self.pathloss, "normalisation": self.normalisation,
                "pool": self.pool, "pool_seed": self.pool_seed}

    normalisation = "none"


class _SystemLevel(TR38901Source):
    """UMi / UMa: one Sionna system-level model, a fresh single-sector drop of one terminal per link."""

    system_level = True
    scenario = ""
    normalisation = "per user terminal: wideband power over its antennas and the BS antennas = 1"

    def _sionna_model(self):
        if self._model is None:
            from sionna.phy.channel import tr38901
            cls = {"umi": tr38901.UMi, "uma": tr38901.UMa}[self.scenario]
            fc = self.carrier_frequency
            self._model = cls(carrier_frequency=fc, o2i_model="low",
                              ut_array=_panel(self.ue_antennas, "omni", fc),
                              bs_array=_panel(self.n_bs, "38.901", fc), direction=self.direction,
                              enable_pathloss=self.pathloss, enable_shadow_fading=self.pathloss,
                              precision="single", device="cpu")
        return self._model

    def _sionna_cir(self, n):
        from sionna.phy.channel import gen_single_sector_topology
        model = self._sionna_model()
        topology = gen_single_sector_topology(n, 1, self.scenario, precision="single", device="cpu")
        model.reset_topology()
        model.set_topology(*topology, los="random")
        a, tau = model(1, 1.0)
        return self._canonical(a, tau, self.direction)

    def _normalise(self, a):
        if self.pathloss:
            return a
        p = a.abs().square().sum(-1).mean(dim=(1, 2), keepdim=True).unsqueeze(-1)   # (n, 1, 1, 1)
        return a / p.clamp_min(1e-30).sqrt()

    def describe(self):
        return {**super().describe(), "scenario": self.scenario, "topology": "single sector, one drop per terminal",
                "o2i_model": "low"}


@CHANNELS.register
class UMiSource(_SystemLevel):
    """3GPP TR 38.901 urban micro (street canyon) through Sionna's ``UMi``.

    ``sample(batch, seed)`` -> ChannelBatch with H (B, n_rx, n_tx) complex64 at the carrier;
    ``sample_bands(batch, seed, n_bands)`` -> H (B, n_bands, n_rx, n_tx) complex64.
    Settings: see :class:`TR38901Source` and the module docstring.
    """

    name = "umi"
    scenario = "umi"


@CHANNELS.register
class UMaSource(_SystemLevel):
    """3GPP TR 38.901 urban macro through Sionna's ``UMa`` (as ``umi`` otherwise)."""

    name = "uma"
    scenario = "uma"


@CHANNELS.register
class CDLSource(TR38901Source):
    """3GPP TR 38.901 CDL-``cdl_model`` through Sionna's ``CDL`` (delay spread ``delay_spread_ns``).

    ``sample`` -> H (B, n_rx, n_tx) complex64; ``sample_bands`` -> H (B, n_bands, n_rx, n_tx) complex64.
    Normalised by one constant (fixed cluster angles: one large-scale gain), calibrated on a fixed seed.
    """

    name = "cdl"
    normalisation = "one constant: mean element-pair power of a fixed-seed calibration draw = 1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scale = None

    def _make(self, n_bs: int, n_ue: int):
        from sionna.phy.channel.tr38901 import CDL
        fc = self.carrier_frequency
        return CDL(self.cdl_model, self.delay_spread_ns * 1e-9, fc, ut_array=_panel(n_ue, "omni", fc),
                   bs_array=_panel(n_bs, "38.901", fc), direction=self.direction, precision="single", device="cpu")

    def _calibrate(self) -> float:
        # every BS element has the same pattern and every UE element is omni, so the mean power of one
        # element pair is that of any pair: measure it on single-element arrays (cheap), once per process
        key = (self.cdl_model, self.direction, self.carrier_frequency_ghz)
        if key not in _CDL_SCALE:
            with sionna_seeded(derive_seed(0, "tr38901-cdl-calibration", *key)):
                a, _ = self._make(1, 1)(_CDL_CALIBRATION_LINKS, 1, 1.0)
            _CDL_SCALE[key] = math.sqrt(a.abs().square().sum(-2).mean().item())
        return _CDL_SCALE[key]

    def _sionna_cir(self, n):
        if self._model is None:
            self._model = self._make(self.n_bs, self.ue_antennas)
        a, tau = self._model(n, 1, 1.0)
        return self._canonical(a, tau, self.direction)

    def _normalise(self, a):
        if self._scale is None:
            # the calibration's own seeding nests inside the draw's and restores its state
            self._scale = self._calibrate()
        return a / self._scale

    def describe(self):
        return {**super().describe(), "cdl_model": self.cdl_model, "delay_spread_ns": self.delay_spread_ns}


@CHANNELS.register
class TDLSource(TR38901Source):
    """3GPP TR 38.901 TDL-``cdl_model`` through Sionna's ``TDL``; antennas spatially uncorrelated.

    ``sample`` -> H (B, n_rx, n_tx) complex64; ``sample_bands`` -> H (B, n_bands, n_rx, n_tx) complex64.
    The model's own normalisation (E|H_ij|^2 = 1).
    """

    name = "tdl"
    normalisation = "the model's own (power delay profile sums to 1)"

    def _sionna_cir(self, n):
        if self._model is None:
            from sionna.phy.channel.tr38901 import TDL
            self._model = TDL(self.cdl_model, self.delay_spread_ns * 1e-9, self.carrier_frequency, min_speed=0.0,
                              max_speed=0.0, num_rx_ant=self.ue_antennas, num_tx_ant=self.n_bs,
                              precision="single", device="cpu")
        a, tau = self._model(n, 1, 1.0)
        return self._canonical(a, tau, "downlink")          # rx = UE, tx = BS by construction

    def describe(self):
        d = {**super().describe(), "cdl_model": self.cdl_model, "delay_spread_ns": self.delay_spread_ns}
        d["bs_array"], d["ue_array"] = f"{self.n_bs} uncorrelated antennas", f"{self.ue_antennas} uncorrelated antennas"
        return d
