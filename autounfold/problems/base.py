"""What a problem plugin declares and supplies. A leaf of the package: it imports no algorithm.

A problem is one module holding a ``ProblemConfig`` subclass (its YAML schema and defaults) and a
``Problem`` subclass registered with ``@PROBLEMS.register``. The class attributes are the
declaration every other layer reads (config validation, build, CLI, evaluation, canary, monitor);
the methods are the math the algorithms, unfolded networks and training call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple, Type

import torch

from ..schema import Schema


class ProblemConfig(Schema):
    """Base of every problem's YAML schema: ``name`` selects the problem, the rest are its settings
    (unknown keys are errors). Subclasses declare fields with defaults and bounds."""

    name: str


@dataclass(frozen=True)
class ReferenceSolver:
    """How to solve a problem to convergence when it has no closed form: a registered update rule
    (``algorithm``, default ``pgd`` = ``autounfold.algorithms.ProximalGradient`` with
    ``extrapolation`` / ``normalize``) with ``params``, run until the largest relative objective
    change over the batch is below ``tol`` (``algorithms.reference``). With ``inits`` (names of
    ``problem.init`` methods) it is run from each and the best objective per sample is kept; with
``per_sample`` each sample stops at its own tolerance (instances must support ``inst[idx]`` with a
boolean mask and with an integer index tensor that repeats entries: several ``inits`` are solved as one
stacked batch ``inst[arange(B).repeat(S)]``).

    ``params`` values may name a schedule the algorithms know (``"fista"``: FISTA's momentum)."""

    extrapolation: str = "nesterov"
    normalize: Optional[str] = None
    params: Tuple[Tuple[str, Any], ...] = (("step", 1.0),)
    tol: float = 1e-7
    max_iterations: int = 20000
    algorithm: str = "pgd"
    inits: Tuple[str, ...] = ()
    per_sample: bool = False


class Problem:
    """Base class of problem plugins.

    Declaration (class attributes, read without building the problem):
        name: the YAML name (``problem.name``).
        Config: the ``ProblemConfig`` subclass (schema and defaults).
        sense: +1 maximise (spectral efficiency), -1 minimise (LASSO). Algorithms step along
            ``sense * gradient``, so the sign always follows the objective.
        scalings / default_scaling: gradient scalings ``problem.curvature`` knows; a config's
            ``model.gradient_scaling`` must be one of them, ``auto`` or ``none``.
        score_key / score_sign: which ``summarize`` entry is the validation score, and +1 if
            higher is better (-1: the score is ``-summary[score_key]``). Searches and canaries
            maximise the score.
        metrics: ``summarize`` keys and what they mean (``evaluate`` and the docs print them).
        classical: names of ``autounfold.evaluation.baselines.CLASSICAL`` solvers that are the
            honest comparison at equal depth K.
        scenarios: ``evaluate --scenario`` names -> (label, changes to the problem config).
        sampling_keys: dotted problem-config keys that change only how instances are drawn (an SNR
            range, a channel model, an error knob), not the problem's math or sizes: what an
            experiment's ``training.problem`` may change for its training batches.
        operating_key: the dotted sampling key of the problem's SNR range in dB (``channel.snr_db``,
            ``ebno_db``) along which its score's metric falls towards 0 (SER, BLER): what
            ``training.refine.crossing`` sweeps to place its draw where the metric crosses a target;
            None: the problem has no such range (a refine draw is then placed by ``training.refine.problem``).
        draws_channels: instances are ``ChannelBatch`` from a ``ChannelSource`` (``problem.source``),
            so recorded CSI, ``csi write``, the drift monitor and canary traffic apply.
        instance_snr: its instances carry each sample's SNR in dB (``inst.snr_db``, (B,)), which
            SNR-conditioned models (``model.snr_knots``) read; None: as ``draws_channels``.
        monitored: the drift monitor can watch it (instances carry H whose last axis is the transmit
            antennas, and ``drift_source`` gives the synthetic drift); None: as ``draws_channels``.
        monitor_csi: the monitor takes windows of recorded CSI (Parquet H (n_rx, n_tx)) for it (through
            ``traffic``); None: as ``draws_channels``.
        shadow_fraction: the share of a monitor window its shadow reference also solves when the
            monitor's ``shadow_fraction`` setting is left out (a costly reference: a small share).
        promote_tolerance: ``autounfold promote``'s default tolerance, in this problem's score units
            (how far below the champion's score a challenger may score and still be promoted;
            ``--tolerance`` overrides it): 0.05 (points of the optimum for beamforming, dB for LASSO).
        reference_solver: how ``algorithms.reference`` solves an instance without a closed form.
        inputs / outputs: the call signature of a model for this problem, for the docs.

    Methods (``inst`` an instance batch of B samples, ``x`` a batch of iterates):
        from_config(cfg) -> problem                   build from the validated config
        sample(batch, seed, device) -> inst           fresh random instances
        instance(*inputs) -> inst                     validated instance from raw tensors
        accept(batch) -> inst                         an instance from an external source's batch
        traffic(batch, seed) -> inst                  the monitor's served traffic over a window of channels
        monitor_rows(inst) -> (..., d)                the samples whose second moment the monitor watches
        monitor_loss(x, inst) -> (B,)                 the loss of the monitor's gradient-norm alarm
        monitor_shadow(x, inst, mask, pct) -> dict    the monitor's shadow metric (None: objective vs reference)
        drift_changes(R) -> dict                      config changes that aim a re-search at what the monitor sees
        dims(inst) -> dict                            its sizes (what layer types' ``fixes`` name)
        objective(x, inst) -> (B,)                    the objective value
        gradient(x, inst, operator=None) -> like x    analytic gradient (real gradient in complex form)
        curvature(x, inst, mode) -> (B,)              the scale the gradient is divided by
        scaled_direction(x, inst, mode) -> (d, L)     both at once (override to share work)
        prox(z, inst, threshold=None) -> like x       projection onto the feasible set / proximal map
        feasible(x, inst) -> (B,) bool
        init(inst, method=None) -> x0
        output(x, inst) -> what the model returns      default x
        closed_form(inst) -> x or None                the optimum where a formula gives it
        reference_init(inst) -> x0                    the start of the iterative reference solve
        ground_truth(inst) -> x or None               what generated the instance, when known
        loss_scale(inst) -> (B,)                      per-sample scale of the "relative" loss
        supervised_target(inst) -> x or None          None: the reference solution
        supervised_loss(x, inst, x_ref) -> (B,)
        summarize(x, inst, ref) -> dict of floats     the metrics of a batch of solutions
        signature() -> dict                           sizes two models must share to be compared
        settings() / describe() -> dict
    """

    name: ClassVar[str] = "problem"
    Config: ClassVar[Type[ProblemConfig]] = ProblemConfig
    sense: ClassVar[float] = 1.0
    scalings: ClassVar[Tuple[str, ...]] = ()
    default_scaling: ClassVar[Optional[str]] = None
    score_key: ClassVar[str] = ""
    score_sign: ClassVar[float] = 1.0
    metrics: ClassVar[Dict[str, str]] = {}
    classical: ClassVar[Tuple[str, ...]] = ()
    scenarios: ClassVar[Dict[str, Tuple[str, dict]]] = {"nominal": ("the trained configuration", {})}
    sampling_keys: ClassVar[Tuple[str, ...]] = ()
    operating_key: ClassVar[Optional[str]] = None
    draws_channels: ClassVar[bool] = False
    instance_snr: ClassVar[Optional[bool]] = None
    monitored: ClassVar[Optional[bool]] = None
    monitor_csi: ClassVar[Optional[bool]] = None
    shadow_fraction: ClassVar[float] = 0.01
    promote_tolerance: ClassVar[float] = 0.05
    reference_solver: ClassVar[Optional[ReferenceSolver]] = None
    inputs: ClassVar[str] = ""
    outputs: ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: ProblemConfig) -> "Problem":  # pragma: no cover - abstract
        raise NotImplementedError

    def settings(self) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"problem": self.name, **self.settings()}

    def signature(self) -> dict:
        return {"problem": self.name, **self.settings()}

    @classmethod
    def memory_estimate(cls, cfg: ProblemConfig, batch: int) -> Dict[str, int]:
        """Bytes the problem would allocate, by the setting that drives them, for instances of
        ``batch`` samples, computed from the config alone (before anything is allocated)."""
        return {}

    def gradient_direction(self, x, inst, operator: Optional[dict] = None) -> torch.Tensor:
        """``sense * gradient``: the direction that improves the objective."""
        return self.sense * self.gradient(x, inst, operator)

    def scaled_direction(self, x, inst, mode: Optional[str], operator: Optional[dict] = None):
        """``(gradient_direction, curvature or None)`` at x, what one scaled gradient step needs. A
        problem whose curvature reuses the gradient overrides this to compute the gradient once."""
        d = self.gradient_direction(x, inst, operator)
        return d, (self.curvature(x, inst, mode) if mode else None)

    def accept(self, batch):
        return batch

    def is_monitored(self) -> bool:
        return self.draws_channels if self.monitored is None else bool(self.monitored)

    def accepts_csi(self) -> bool:
        """Whether the monitor takes windows of recorded CSI (Parquet) for this problem."""
        return self.draws_channels if self.monitor_csi is None else bool(self.monitor_csi)

    # ---- hooks of the drift monitor (autounfold.monitoring); the defaults are the transmit-side
    # ---- watch of the precoding problems
    def traffic(self, batch, seed):
        """The instance the monitor serves for a window of channels ``batch`` (a ``ChannelBatch`` from a
        source or from recorded CSI). Default ``accept(batch)``; a problem whose instances carry more
        than the channel (detection: symbols and noise) draws the rest from ``seed`` (int or generator)."""
        return self.accept(batch)

    def monitor_rows(self, inst) -> torch.Tensor:
        """The samples whose second moment ``E[r^H r]`` over the rows r (last axis d) the monitor compares
        with the baseline's (relative Frobenius change). Default ``inst.H``: the rows of H are transmit-side
        vectors, so the moment is the transmit covariance R_tx (n_tx x n_tx)."""
        return inst.H

    def monitor_loss(self, x, inst) -> torch.Tensor:
        """Per-sample loss (B,) whose parameter gradient norm the monitor watches: default the negated
        objective in the improving direction, ``-sense * objective``."""
        return -(self.sense * self.objective(x, inst))

    def monitor_shadow(self, x, inst, mask: torch.Tensor, threshold_pct: float) -> Optional[Dict[str, Any]]:
        """The monitor's shadow metric for the model's iterate ``x`` on ``inst`` (the samples ``mask``
        (B,) bool are the shadow share). None: the monitor's default (the objective of the model as % of
        the reference solution's, alert below ``threshold_pct``). Otherwise a dict with ``shadow_pct``
        (float, higher is better), ``shadow_alarm`` (bool) and any other numbers to record; an optional
        ``shadow_line`` (str) replaces the percentage in the monitor's printed line."""
        return None

    def drift_changes(self, R) -> Dict[str, Any]:
        """Changes to this problem's config (dotted keys below ``problem.``, e.g. ``{"channel.model":
        "uma"}``) that aim a triggered re-search at the channels whose monitored moment is R, beside
        the angular-spread estimate; {}: none (the default)."""
        return {}

    def drift_source(self, config, angular_spread_deg: float):
        """A source like this problem's (``config``: its validated problem section) with the transmit
        angular spread changed, for the monitor's synthetic drift; None: the monitor's default (the
        channel section as correlated Rayleigh at that spread)."""
        return None

    def estimate_angular_spread(self, R) -> Optional[float]:
        """The angular spread (degrees) of this problem's channel model that fits the transmit
        covariance R (n_tx x n_tx), for the monitor's re-search; None: the monitor's exponential-
        correlation estimate (exact for correlated Rayleigh)."""
        return None

    def output(self, x, inst):
        """What a model's call returns for the iterate x (default x itself; hybrid precoding: the
        pair (W_a, W_d) its packed iterate holds)."""
        return x

    def dims(self, inst) -> Dict[str, int]:
        """The sizes of an instance, by the names a layer type's ``fixes`` uses (default none)."""
        return {}

    def closed_form(self, inst) -> Optional[torch.Tensor]:
        return None

    def reference_init(self, inst) -> torch.Tensor:
        return self.init(inst)

    def ground_truth(self, inst) -> Optional[torch.Tensor]:
        return None

    def supervised_target(self, inst) -> Optional[torch.Tensor]:
        return None

    def score(self, summary: dict) -> float:
        """The validation score of a ``summarize`` result; higher is better."""
        return self.score_sign * float(summary[self.score_key])

    def score_count(self, inst) -> int:
        """How many units the score's metric counts over ``inst`` (blocks for a BLER; detection: symbols),
        so that a rate read as 0 can be taken as half a unit (``curves.snr_at``'s floor)."""
        return int(inst.batch_size)


def batch_scalar(value, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a python scalar, a 0-d tensor or a (B,) tensor against ``like`` (B, ...)."""
    t = torch.as_tensor(value, dtype=like.real.dtype, device=like.device)
    if t.dim() == 1:
        t = t.view(-1, *([1] * (like.dim() - 1)))
    return t


def abs2(z: torch.Tensor) -> torch.Tensor:
    """|z|^2 elementwise as re^2 + im^2 (complex ``abs()`` is several times slower on CPU, and so is
    summing the last axis of the real view: about 3x at (256, 8, 8) complex64, where the unfolded
    MU-MISO layers spend their time)."""
    return z.real.square() + z.imag.square()


def frob2(V: torch.Tensor) -> torch.Tensor:
    """||V||_F^2 over the last two dimensions of a complex (B, m, n) tensor, (B,): one fused
    reduction of the real view (on CPU about 9x faster than summing ``abs2``, which writes |V|^2 out
    first; this sits on every call of the beamformers)."""
    return torch.linalg.vector_norm(torch.view_as_real(V.resolve_conj()), dim=(-3, -2, -1)).square()


def re_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Re sum conj(a) b over all but the first dimension of complex (B, ...) tensors, (B,): one fused
    reduction of the real views."""
    B = a.shape[0]
    return torch.linalg.vecdot(torch.view_as_real(a.resolve_conj()).reshape(B, -1),
                               torch.view_as_real(b.resolve_conj()).reshape(B, -1))


def scale_rows(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """z (B, ...) complex times the real per-sample factor s (B,), through the real view (a real
    tensor times a complex one is first promoted to complex)."""
    return rmul(z, s.view(-1, *([1] * (z.dim() - 1))))


def rmul(z: torch.Tensor, s) -> torch.Tensor:
    """z times s where s may be a real tensor broadcastable to z: for complex z through the real view,
    so s is not first promoted to a complex copy (bit-identical; the unfolded layers do this several
    times per layer at sizes where each copy costs as much as the product)."""
    if z.is_complex() and isinstance(s, torch.Tensor) and s.dim() > 0 and not s.is_complex():
        return torch.view_as_complex(torch.view_as_real(z.resolve_conj()) * s.unsqueeze(-1))
    return z * s


def log_condition(H: torch.Tensor) -> torch.Tensor:
    """How far H's rows are from orthogonal: log10 of tr(G) tr(G^-1) / m^2 for the smaller Gram matrix G
    (H H^H for m <= n, else H^H H; m its size), (B,) float32. That is the arithmetic over the harmonic
    mean of G's eigenvalues, the factor by which zero forcing's transmit power exceeds that of m
    orthogonal rows of the same total gain: 0 for orthogonal rows of equal norm, between
    log10(k / m^2) and log10((k + 1)^2 / (4 k)) otherwise, k = cond(G) (Kantorovich). H (B, m, n) complex (rows: users or receive
    antennas). A Cholesky factor and one triangular solve (half the time of G's eigenvalues at 8 x 8);
    a load of 1e-6 of G's mean eigenvalue keeps G^-1 defined, so values stay below 6 (a factorisation that
    fails in float32 reads as 6). Without gradient: a feature of the input."""
    with torch.no_grad():
        G = H @ H.mH if H.shape[-2] <= H.shape[-1] else H.mH @ H
        m = G.shape[-1]
        tr = torch.diagonal(G, dim1=-2, dim2=-1).real.sum(-1).clamp_min(1e-30)
        G.diagonal(dim1=-2, dim2=-1).add_((1e-6 / m * tr).unsqueeze(-1))
        L, info = torch.linalg.cholesky_ex(G)
        eye = torch.eye(m, dtype=G.dtype, device=G.device).expand_as(G)
        inv_trace = abs2(torch.linalg.solve_triangular(L, eye, upper=False)).sum((-2, -1))      # tr(G^-1) = ||L^-1||_F^2
        value = torch.log10(tr * inv_trace / (m * m)).clamp(0.0, 6.0)
        return torch.where(info == 0, value, torch.full_like(value, 6.0)).float()


def _norm(z: torch.Tensor, dims, keepdim: bool) -> torch.Tensor:
    """||z|| over the complex axes ``dims``: one fused reduction of the real view (about 10x faster on
    CPU than summing ``abs2`` at (256, 16, 8))."""
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    real = tuple(d if d >= 0 else d - 1 for d in dims) + (-1,)
    n = torch.linalg.vector_norm(torch.view_as_real(z.resolve_conj()), dim=real, keepdim=keepdim)
    return n.squeeze(-1) if keepdim else n


def norm_ratio(g: torch.Tensor, x: torch.Tensor, dims=(-2, -1), keepdim: bool = False) -> torch.Tensor:
    """||g|| / ||x|| over ``dims`` (the ``norm`` gradient scaling: a step alpha then moves x by
    alpha ||x||), both norms kept >= 1e-30."""
    return _norm(g, dims, keepdim).clamp_min(1e-30) / _norm(x, dims, keepdim).clamp_min(1e-30)
