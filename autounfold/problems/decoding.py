"""Channel decoding: 5G NR LDPC codes (Sionna's encoder and graph) over AWGN with BPSK or QPSK.

The code is Sionna's ``LDPC5GEncoder(k, n)`` (base graph, lifting size Z and rate matching of TS
38.212 as Sionna implements them): k information bits are encoded into n transmitted bits; the first
2Z systematic bits are punctured (never sent), k_ldpc - k filler bits pad the information part and
are known zeros, and the parity bits beyond the n sent are not sent either. The decoding graph is the
one ``LDPC5GDecoder(encoder)`` decodes on (its parity-check matrix with the punctured degree-1 nodes
pruned, ``prune_pcm=True``), N variable nodes:

    internal position p < k:            information bit p (the first 2Z punctured: channel LLR 0)
    k <= p < k_ldpc:                    filler (known zero, LLR +llr_max as Sionna's decoder uses)
    k_ldpc <= p < k_ldpc + n - (k - 2Z): the transmitted parity bits, then the unsent ones (LLR 0)

Each codeword bit c is sent as BPSK x = 1 - 2c (Es = 1), or two bits per QPSK symbol
((1 - 2c_0) + j (1 - 2c_1)) / sqrt(2) (Gray, Es = 1: two BPSK at the same Eb/N0). The noise is
N0 = 1 / (R m Eb/N0) (R = k / n, m bits per symbol), Eb/N0 drawn per block uniformly in
``ebno_db`` (dB).

Sign convention (Sionna's, used everywhere here): an LLR is the logit log P(c = 1) / P(c = 0), so a
positive value means bit 1 (``LDPC5GDecoder`` takes and, with ``hard_out=False``, returns these);
the hard decision is c^ = 1 where the logit is >= 0 (Sionna's ``x <= 0`` on its internal
log P(0) / P(1)). The BPSK channel logit is -4 y / N0, the QPSK one -2 sqrt(2) y_re|im / N0.

Public model API: ``autounfold.load(path)`` returns a module called as ``model(llr) -> llr_out`` with
``llr`` (B, n) float32 channel logits of the n transmitted bits (the order Sionna's encoder
outputs) and ``llr_out`` (B, n) float32 a-posteriori logits of the same bits, same convention. The
exported (TorchScript / torch.export) module has the same interface (``real_interface``).

The iterate a decoder carries (``x``, what the update rule ``algorithms.bp`` returns each
iteration) is the logits of the 2Z + n codeword bits that are information or transmitted bits,
(B, 2Z + n): x[:, :k] are the k information bits, x[:, 2Z:] the n transmitted bits (the first
k - 2Z of them are information bits too). Metrics: BER and BLER over the k information bits
(what a receiver delivers), the cross-entropy over all 2Z + n.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from ..errors import ConfigError, InputError
from ..plugins import PROBLEMS
from ..seeding import as_generator
from .base import Problem, ProblemConfig

MODULATIONS = {"bpsk": 1, "qpsk": 2}
"""Modulation name -> bits per symbol."""
MIN_RATE, MAX_RATE = 0.2, 0.95
"""The code rates Sionna's 5G encoder supports (no outer repetition below 1/5; TS 38.212 above)."""
LLR_MAX = 20.0
"""Sionna's default internal clipping of every LLR and message (``LDPCBPDecoder(llr_max=20)``)."""


class DecodingConfig(ProblemConfig):
    """``problem:`` of an LDPC decoding experiment (``name: decoding``).

    n: transmitted bits per block; k: information bits (rate k / n in [1/5, 0.95], 12 <= k <= 8448,
    what Sionna's LDPC5GEncoder supports); modulation: bpsk or qpsk (n even); ebno_db: [low, high],
    Eb/N0 of each block uniform in it (dB); all_zero: send the all-zero codeword (training draws
    without the encoder; BP's error rates do not depend on the codeword on a symmetric channel);
    llr_max: the clipping of LLRs and messages (Sionna's 20)."""

    name: Literal["decoding"] = "decoding"
    n: int = Field(128, ge=16, le=16384)
    k: int = Field(64, ge=12, le=8448)
    modulation: Literal["bpsk", "qpsk"] = "bpsk"
    ebno_db: Tuple[float, float] = (1.0, 4.0)
    all_zero: bool = False
    llr_max: float = Field(LLR_MAX, gt=0.0, le=100.0)

    @field_validator("k")
    @classmethod
    def _rate(cls, k, info: ValidationInfo):
        n = info.data.get("n")
        if n is None:
            return k
        if k >= n:
            raise ValueError(f"must be smaller than n (got k={k}, n={n})")
        rate = k / n
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"the rate k/n = {k}/{n} = {rate:.3f} is not supported by the 5G LDPC code "
                             f"(allowed {MIN_RATE:g} .. {MAX_RATE:g})")
        return k

    @field_validator("modulation")
    @classmethod
    def _even(cls, m, info: ValidationInfo):
        n = info.data.get("n")
        if n is not None and n % MODULATIONS[m]:
            raise ValueError(f"{m} carries {MODULATIONS[m]} bits per symbol: n ({n}) must be a multiple of it")
        return m

    @field_validator("ebno_db")
    @classmethod
    def _range(cls, v):
        lo, hi = v
        if not (-10.0 <= lo <= hi <= 30.0):
            raise ValueError(f"must be [low, high] with -10 <= low <= high <= 30 dB (got {list(v)})")
        return v


@dataclass(frozen=True)
class LDPCGraph:
    """The decoding graph of a 5G LDPC code as Sionna's ``LDPC5GDecoder`` builds it (pruned).

    Sizes: k, n, z, k_ldpc, k_filler, num_vns N, num_cns C, num_edges E.
    Edges (in Sionna's order: sorted by variable node): cn_idx (E,), vn_idx (E,) int64.
    edge_type (E,): the base-graph entry (row, column) of the edge, 0..num_edge_types-1 (the Z lifted
    copies of one base-graph entry share it). vn_type (N,): the base-graph column of the node,
    ``num_vn_types`` for the filler nodes. cn_table (C, d_max): the edges of each check node,
    padded with E; cn_slot (E,): each edge's position in the flattened table.
    span_vns (2Z + n,): the internal node of each bit the iterate carries (module docstring).
    layers: the row layers of the layered schedule, one per base-graph row, in base-graph order: a tuple of
    (edges (Z_l, d_l), nodes (Z_l, d_l)) int64, the edges of the layer's Z_l checks (Z, fewer in a row
    the rate matching pruned) and their variable nodes. A base-graph entry is a Z x Z circulant
    permutation, so the checks of one layer share no variable node (checked when the graph is built).
    """

    k: int
    n: int
    z: int
    k_ldpc: int
    k_filler: int
    base_graph: str
    num_vns: int
    num_cns: int
    cn_idx: torch.Tensor
    vn_idx: torch.Tensor
    edge_type: torch.Tensor
    num_edge_types: int
    vn_type: torch.Tensor
    num_vn_types: int
    cn_table: torch.Tensor
    cn_slot: torch.Tensor
    span_vns: torch.Tensor
    layers: tuple = ()

    @property
    def num_edges(self) -> int:
        return int(self.vn_idx.numel())

    @property
    def span(self) -> int:
        return 2 * self.z + self.n


@functools.lru_cache(maxsize=8)
def sionna_code(k: int, n: int):
    """Sionna's ``LDPC5GEncoder(k, n)`` and the ``LDPC5GDecoder`` graph (CPU, float32), built once per
    process. Sionna's refusals become ConfigError naming problem.k / problem.n."""
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    try:
        enc = LDPC5GEncoder(k, n, device="cpu")
        dec = LDPC5GDecoder(enc, cn_update="boxplus", hard_out=False, return_infobits=False, num_iter=1,
                            device="cpu")
    except ValueError as err:
        raise ConfigError(f"problem.k / problem.n: Sionna's 5G LDPC code does not support k={k}, n={n} "
                          f"({str(err).strip().splitlines()[0][:200]})") from None
    return enc, dec


@functools.lru_cache(maxsize=8)
def ldpc_graph(k: int, n: int) -> LDPCGraph:
    enc, dec = sionna_code(k, n)
    pcm = dec.pcm.tocoo()
    cn, vn = np.asarray(pcm.row, dtype=np.int64), np.asarray(pcm.col, dtype=np.int64)
    order = np.lexsort((cn, vn))                           # by variable node (Sionna's edge order)
    cn, vn = cn[order], vn[order]
    z, k_ldpc, kf = enc.z, enc.k_ldpc, enc.k_filler
    C, N = pcm.shape
    _, edge_type = np.unique((cn // z) * 10_000 + vn // z, return_inverse=True)
    num_vn_types = -(-N // z)
    vn_type = np.arange(N) // z
    vn_type[k:k_ldpc] = num_vn_types                       # fillers: a type of their own (weight fixed 1)
    E = len(vn)
    cn_sorted = np.argsort(cn, kind="stable")
    degrees = np.bincount(cn, minlength=C)
    d_max = int(degrees.max())
    table = np.full((C, d_max), E, dtype=np.int64)
    slot = np.zeros(E, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(degrees)[:-1]])
    for pos, e in enumerate(cn_sorted):
        c = cn[e]
        j = pos - starts[c]
        table[c, j] = e
        slot[e] = c * d_max + j
    span_pos = np.arange(2 * z + n)                         # positions in the filler-free codeword
    span_vns = np.where(span_pos < k, span_pos, span_pos + kf)
    if span_vns.max() >= N:
        raise ConfigError(f"problem.n: the transmitted bits of k={k}, n={n} are not all in the decoding graph")
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)  # noqa: E731
    layers = []
    rows = np.arange(C) // z
    for r in np.unique(rows):
        edges = table[rows == r]
        deg = (edges < E).sum(1)                           # the table holds each check's edges first, then pads
        if (deg != deg[0]).any():
            raise ConfigError(f"problem.k / problem.n: the checks of base-graph row {r} of k={k}, n={n} have "
                              "unequal degrees; the layered schedule needs one degree per row")
        edges = edges[:, :deg[0]]
        nodes = vn[edges]
        if np.unique(nodes).size != nodes.size:
            raise ConfigError(f"problem.k / problem.n: the checks of base-graph row {r} of k={k}, n={n} share a "
                              "variable node; the layered schedule needs them disjoint")
        layers.append((t(edges), t(nodes)))
    return LDPCGraph(k=k, n=n, z=z, k_ldpc=k_ldpc, k_filler=kf, base_graph=str(getattr(enc, "_bg", "")),
                     num_vns=N, num_cns=C, cn_idx=t(cn), vn_idx=t(vn), edge_type=t(edge_type),
                     num_edge_types=int(edge_type.max()) + 1, vn_type=t(vn_type), num_vn_types=num_vn_types,
                     cn_table=t(table), cn_slot=t(slot), span_vns=t(span_vns), layers=tuple(layers))


@dataclass
class DecodingBatch:
    """llr: (B, n) float32 channel logits (module docstring); bits: (B, 2Z + n) float32 the codeword
    bits the iterate carries (None for external inputs); ebno_db: (B,) float32 (NaN when unknown)."""

    llr: torch.Tensor
    bits: Optional[torch.Tensor]
    ebno_db: torch.Tensor

    def to(self, device) -> "DecodingBatch":
        return DecodingBatch(self.llr.to(device), None if self.bits is None else self.bits.to(device),
                             self.ebno_db.to(device))

    @property
    def batch_size(self) -> int:
        return self.llr.shape[0]

    def __getitem__(self, idx) -> "DecodingBatch":
        return DecodingBatch(self.llr[idx], None if self.bits is None else self.bits[idx], self.ebno_db[idx])


def _ebno(db: float) -> dict:
    return {"ebno_db": [db, db]}


@PROBLEMS.register
class DecodingProblem(Problem):
    """Decoding of a 5G NR LDPC code (module docstring).

    Args:
        k, n: information and transmitted bits per block.
        modulation: "bpsk" or "qpsk".
        ebno_db: (low, high) dB, each block's Eb/N0 uniform in it.
        all_zero: send the all-zero codeword (no encoding).
        llr_max: clipping of channel LLRs and messages (Sionna's 20).
    """

    name = "decoding"
    Config = DecodingConfig
    sense = -1.0
    # BLER, not BER: a block with any wrong information bit is lost (the CRC fails, HARQ resends it), so
    # the block error rate is what a link budget and the bars are about; BER rewards spreading errors.
    score_key = "bler"
    score_sign = -1.0
    metrics = {"bler": "block error rate: share of blocks with at least one wrong information bit",
               "ber": "bit error rate over the k information bits (hard decision: logit >= 0 is 1)",
               "ce": "binary cross-entropy of the 2Z + n information / transmitted bits, nats per bit",
               "feasible": "all output LLRs finite"}
    classical = ("bp", "bp_layered", "sionna_bp", "minsum")
    sampling_keys = ("ebno_db", "all_zero")
    operating_key = "ebno_db"
    scenarios = {
        "nominal": ("nominal (the trained Eb/N0 range)", {}),
        "ebno1": ("Eb/N0 1 dB", _ebno(1.0)),
        "ebno2": ("Eb/N0 2 dB", _ebno(2.0)),
        "ebno3": ("Eb/N0 3 dB", _ebno(3.0)),
        "ebno4": ("Eb/N0 4 dB", _ebno(4.0)),
        "ebno5": ("Eb/N0 5 dB", _ebno(5.0)),
        "qpsk": ("QPSK (two BPSK per symbol) over the same Eb/N0 range", {"modulation": "qpsk"}),
    }
    # promote's default tolerance in BLER (the score is -BLER): 0.005 = half a point of BLER. Over the preset's
    # Eb/N0 range (3.5-5.5 dB) BP-5's BLER is ~0.025; the default canary (5 % of 200 batches of 64 blocks: ~640
    # challenger blocks) measures it with a standard error of ~0.006, and half a point is ~20 % more lost blocks
    # there. The base 0.05 is twice the whole BLER: any challenger would pass.
    promote_tolerance = 0.005
    inputs = "llr (B, n) float32: channel LLRs as logits log P(c=1)/P(c=0) of the n transmitted bits (Sionna's convention)"
    outputs = "llr_out (B, n) float32: a-posteriori logits log P(c=1)/P(c=0) of the same n bits"

    @classmethod
    def from_config(cls, cfg: DecodingConfig) -> "DecodingProblem":
        return cls(k=cfg.k, n=cfg.n, modulation=cfg.modulation, ebno_db=tuple(cfg.ebno_db), all_zero=cfg.all_zero,
                   llr_max=cfg.llr_max)

    @classmethod
    def memory_estimate(cls, cfg: DecodingConfig, batch: int) -> dict:
        edges = 5 * cfg.n                                   # about 4-5 edges per transmitted bit (BG1 / BG2)
        return {"problem.n x batch": 4 * 64 * batch * edges}

    def __init__(self, k: int = 64, n: int = 128, modulation: str = "bpsk", ebno_db=(1.0, 4.0),
                 all_zero: bool = False, llr_max: float = LLR_MAX):
        if modulation not in MODULATIONS:
            raise ConfigError(f"decoding: modulation must be one of {', '.join(MODULATIONS)} (got {modulation!r})")
        if not 12 <= k < n or not MIN_RATE <= k / n <= MAX_RATE:
            raise ConfigError(f"decoding: k={k}, n={n} is not a supported 5G LDPC code (12 <= k < n, rate k/n in "
                              f"[{MIN_RATE:g}, {MAX_RATE:g}])")
        if n % MODULATIONS[modulation]:
            raise ConfigError(f"decoding: {modulation} needs n to be a multiple of {MODULATIONS[modulation]} (got {n})")
        lo, hi = (float(v) for v in ebno_db)
        if not lo <= hi:
            raise ConfigError(f"decoding: ebno_db must be [low, high] with low <= high (got {list(ebno_db)})")
        if not llr_max > 0:
            raise ConfigError(f"decoding: llr_max must be > 0 (got {llr_max})")
        self.k, self.n, self.modulation, self.ebno_db = int(k), int(n), modulation, (lo, hi)
        self.all_zero, self.llr_max = bool(all_zero), float(llr_max)
        self.bits_per_symbol = MODULATIONS[modulation]
        self.rate = self.k / self.n
        self.graph = ldpc_graph(self.k, self.n)
        self.z = self.graph.z

    def settings(self):
        return {"n": self.n, "k": self.k, "modulation": self.modulation, "ebno_db": list(self.ebno_db),
                "all_zero": self.all_zero, "llr_max": self.llr_max}

    def signature(self) -> dict:
        return {"problem": self.name, "n": self.n, "k": self.k, "modulation": self.modulation}

    def describe(self) -> dict:
        g = self.graph
        return {"problem": self.name, **self.settings(), "code": {"base_graph": g.base_graph, "z": g.z, "k_ldpc": g.k_ldpc,
                                                                 "filler": g.k_filler, "variable_nodes": g.num_vns,
                                                                 "check_nodes": g.num_cns, "edges": g.num_edges,
                                                                 "layers": len(g.layers)}}

    def dims(self, inst) -> dict:
        return {"n": int(inst.llr.shape[-1]), "k": self.k}

    # ---- instances -------------------------------------------------------------------------
    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """Sionna's 5G encoder: u (B, k) {0, 1} float32 -> c (B, n) float32."""
        enc, _ = sionna_code(self.k, self.n)
        with torch.no_grad():
            return enc(u.float().cpu()).to(torch.float32)

    def noise_var(self, ebno_db: torch.Tensor) -> torch.Tensor:
        """N0 (B,) for unit-energy symbols at Eb/N0 ``ebno_db`` (B,) dB: 1 / (R m 10^(Eb/N0 / 10))."""
        return 1.0 / (self.rate * self.bits_per_symbol * torch.pow(10.0, ebno_db / 10.0))

    def channel(self, c: torch.Tensor, ebno_db: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The channel logits (B, n) of codeword bits c (B, n) sent over AWGN at Eb/N0 ``ebno_db`` (B,)."""
        n0 = self.noise_var(ebno_db).unsqueeze(-1)
        s = 1.0 - 2.0 * c
        if self.modulation == "bpsk":
            y = s + torch.randn(c.shape, generator=g) * (n0 / 2).sqrt()
            return (-4.0 * y / n0).float()
        # QPSK: bit pairs on the real / imaginary parts of (s_0 + j s_1) / sqrt(2), CN(0, N0) noise
        a = 1.0 / math.sqrt(2.0)
        y = a * s + torch.randn(c.shape, generator=g) * (n0 / 2).sqrt()
        return (-4.0 * a * y / n0).float()

    def sample(self, batch: int, seed, device="cpu") -> DecodingBatch:
        """Eb/N0 uniform in ``ebno_db``, information bits uniform (zero with ``all_zero``), Sionna's
        encoder, BPSK / QPSK over AWGN; the draws in that order from one generator."""
        g = as_generator(seed)
        lo, hi = self.ebno_db
        ebno = lo + (hi - lo) * torch.rand(batch, generator=g)
        if self.all_zero:
            u, c = torch.zeros(batch, self.k), torch.zeros(batch, self.n)
        else:
            u = torch.randint(0, 2, (batch, self.k), generator=g).float()
            c = self.encode(u)
        llr = self.channel(c, ebno, g)
        bits = torch.cat([u[:, :2 * self.z], c], dim=1)
        return DecodingBatch(llr, bits, ebno.float()).to(device)

    def instance(self, llr: torch.Tensor) -> DecodingBatch:
        """Validated instance from channel logits llr (B, n) real (module docstring's convention)."""
        if not isinstance(llr, torch.Tensor) or llr.dim() != 2 or llr.shape[-1] != self.n or llr.is_complex() \
                or not llr.is_floating_point():
            raise InputError(f"llr must be a real float tensor of shape (B, n={self.n}), got "
                             f"{tuple(getattr(llr, 'shape', ()))} {getattr(llr, 'dtype', type(llr).__name__)}")
        if not torch.isfinite(llr).all():
            raise InputError("llr contains NaN or Inf")
        return DecodingBatch(llr.float(), None, torch.full((llr.shape[0],), float("nan"), device=llr.device))

    # ---- the real-valued interface of `autounfold export` and the MLflow signature --------------
    def real_interface(self) -> dict:
        return {"inputs": {"llr": ["B", self.n]}, "output": {"llr_out": ["B", self.n]}, "dtype": "float32"}

    def from_real(self, llr: torch.Tensor) -> DecodingBatch:
        """An instance from the exported interface (no validation: the exported boundary's caller checks)."""
        return DecodingBatch(llr, None, torch.zeros_like(llr[:, 0]))

    def to_real(self, inst: DecodingBatch):
        return (inst.llr,)

    # ---- the graph and the iterate ------------------------------------------------------------
    def internal_llr(self, llr: torch.Tensor) -> torch.Tensor:
        """The channel LLRs of the N graph nodes in the decoder's internal convention log P(0)/P(1),
        clipped to llr_max: 0 on the punctured and unsent bits, +llr_max on the fillers (exactly the
        vector ``LDPC5GDecoder`` decodes). llr (B, n) logits -> (B, N)."""
        g, B = self.graph, llr.shape[0]
        L = -llr.clamp(-self.llr_max, self.llr_max)
        info = self.k - 2 * g.z
        tail = g.num_vns - (g.k_ldpc + self.n - info)
        parts = [L.new_zeros(B, 2 * g.z), L[:, :info], L.new_full((B, g.k_filler), self.llr_max), L[:, info:]]
        if tail:
            parts.append(L.new_zeros(B, tail))
        return torch.cat(parts, dim=1)

    def span_of(self, total: torch.Tensor) -> torch.Tensor:
        """The iterate (B, 2Z + n) logits from the decoder's internal a-posteriori LLRs (B, N)."""
        return -total[:, self.graph.span_vns.to(total.device)]

    def init(self, inst, method=None):
        """The channel's view as an iterate (B, 2Z + n): 0 on the punctured bits, the channel logits on the
        transmitted ones (zero BP iterations)."""
        if method not in (None, "channel"):
            raise ConfigError(f"decoding: init must be 'channel' (got {method!r})")
        llr = inst.llr.clamp(-self.llr_max, self.llr_max)
        return torch.cat([llr.new_zeros(llr.shape[0], 2 * self.z), llr], dim=1)

    def output(self, x, inst):
        """The a-posteriori logits of the n transmitted bits, (B, n)."""
        return x[:, 2 * self.z:]

    def info_logits(self, x) -> torch.Tensor:
        return x[:, :self.k]

    def hard(self, x) -> torch.Tensor:
        """Hard decisions (B, ...) {0, 1} float: 1 where the logit is >= 0 (Sionna's decision)."""
        return (x >= 0).to(torch.float32)

    def objective(self, x, inst):
        """Binary cross-entropy of the hard decisions under the iterate's own probabilities, nats per bit,
        (B,): the decoder's uncertainty about its decisions (a converged decoder drives it to 0)."""
        return torch.nn.functional.softplus(-x.abs()).mean(-1)

    def feasible(self, x, inst):
        return torch.isfinite(x).all(-1)

    def ground_truth(self, inst):
        return inst.bits

    def loss_scale(self, inst):
        raise ConfigError("decoding trains on the cross-entropy of the codeword bits: set training.target: supervised")

    def supervised_target(self, inst):
        if inst.bits is None:
            raise InputError("supervised training needs instances with the transmitted codeword bits")
        return inst.bits

    def supervised_loss(self, x, inst, bits):
        """Binary cross-entropy of the 2Z + n codeword bits from the iterate's logits, mean per block, (B,)."""
        return torch.nn.functional.binary_cross_entropy_with_logits(x, bits, reduction="none").mean(-1)

    def summarize(self, x, inst, bits) -> dict:
        """ber / bler over the k information bits against ``bits`` (B, 2Z + n), ce over all, feasible."""
        if bits is None:
            raise InputError("BER / BLER need instances with the transmitted bits")
        wrong = self.hard(self.info_logits(x)) != bits[:, :self.k]
        ce = torch.nn.functional.binary_cross_entropy_with_logits(x.double().clamp(-1e4, 1e4), bits.double())
        return {"bler": float(wrong.any(-1).double().mean()), "ber": float(wrong.double().mean()), "ce": float(ce),
                "feasible": bool(self.feasible(x, inst).all())}

    def errors(self, x, bits) -> Tuple[int, int]:
        """(bit errors, block errors) over the information bits, for accumulating over batches."""
        wrong = self.hard(self.info_logits(x)) != bits[:, :self.k]
        return int(wrong.sum()), int(wrong.any(-1).sum())
