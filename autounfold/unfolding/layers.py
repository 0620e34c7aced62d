"""Layer types: which per-layer parameters an unfolded network learns, and how they are stored.

Each layer type is a ``LayerType`` declaration registered in ``autounfold.plugins.LAYERS``: its
learned parameters (a function mapping the update rule's parameter names to ``LearnedParam``), the
problems it applies to and what its step initialisation must satisfy. Config validation, ``build``
and the unfolded network read this table; the unfolded network stores a (K, *shape) tensor per
parameter (or (1, *shape) when tied across layers).

| layer      | paradigm (survey)              | learned per layer                                   |
|------------|--------------------------------|-----------------------------------------------------|
| step       | learned hyperparameters        | step alpha_k = exp(a_k) > 0                          |
| signed     | learned hyperparameters        | step alpha_k of either sign                          |
| subspace   | learned hyperparameters        | signed step alpha_k, safeguarded by power iteration (``algorithms.subspace``) |
| subspace_momentum | learned hyperparameters | the same plus a heavy-ball momentum beta_k                             |
| momentum   | learned hyperparameters        | step alpha_k > 0 and momentum beta_k                 |
| hybrid     | learned objective parameters   | step alpha_k > 0 and a matrix T_k applied to the gradient (init identity) |
| ista       | learned hyperparameters        | step alpha_k > 0 and threshold theta_k > 0 (ALISTA-style, analytic W = A^T) |
| lista      | learned objective parameters   | Q_k (N, N), S_k (N, M), theta_k: x <- soft(x - (Q_k x - S_k y)/L)       |
| lista_cp   | learned objective parameters   | S_k (N, M) coupled with A, theta_k: x <- soft(x - S_k (A x - y)/L)     |
| wmmse_relax| learned hyperparameters        | WMMSE over-relaxation omega_k (init ``step_init``, 1 = WMMSE)            |
| uwmmse     | learned correction term        | omega_k and the MSE-weight correction w <- a_k w + b_k                  |
| uwmmse_gnn | learned correction term + DNN  | omega_k, a_k, b_k and a per-user MLP (3 -> 8 -> 2) of the state, shared over users |
| hybrid_pga | learned hyperparameters        | analog step mu_a_k > 0 and digital step mu_d_k > 0 (unfolded PGA, survey eq. 12) |
| alista     | learned hyperparameters        | gamma_k, theta_k; analytic W (fixed); support selection                 |
| lista_cpss | learned objective parameters   | W_k (N, M) from the analytic W, theta_k; support selection               |
| tilista    | learned objective parameters   | one W shared by all layers, gamma_k, theta_k; support selection          |
| alista_correction | learned correction term | ALISTA + a per-entry network of (x_i, step_i) added to the update        |
| alista_prox | DNN inductive bias            | ALISTA with a learned prox: soft threshold + theta_k MLP(z_i / theta_k)   |
| rpca_hyper | learned hyperparameters        | RPCA steps eta_L, eta_R and threshold zeta (survey eqs. 25-27)          |
| rpca_objective | learned objective parameters | + Psi_k and Psi_k^-1 per layer                                       |
| rpca_correction | learned correction term   | + a two-layer CNN correcting the factor steps                           |
| rpca_dnn   | DNN inductive bias             | Psi_k, Psi_k^-1 and a two-layer CNN added to Psi_k Y: the transform is a network started at Psi |
| hybrid_pga_band | learned hyperparameters   | mu_a_k and one digital step per band mu_d_kb (fixes n_bands)            |
| hybrid_pga_momentum | learned hyperparameters | mu_a_k, mu_d_k and a heavy-ball momentum beta_k                       |
| sic_damped | learned hyperparameters        | soft interference cancellation with a damping beta_k and two noise inflations per layer |
| deepsic    | DNN inductive bias             | per user and layer: calibrated likelihood + MLP of the SIC statistics, softmax (fixes n_users) |
| detnet     | DNN inductive bias             | LMMSE-preconditioned step delta_k, projection calibration tau_k, an MLP per layer shared by the users |
| admm       | learned hyperparameters        | ADMM penalty rho_k and over-relaxation alpha_k (detection: readout calibration tau_k) |
| admm_net   | learned hyperparameters        | + the z-update's parameters: LASSO threshold theta_k; detection's soft projection (gamma_k, t_k) |
| learned_ep | learned hyperparameters        | EP damping beta_k, variance floor f_k, output temperature tau_k (``learned_ep_scaled``: + cavity-variance scale s_k; ``learned_ep_prior``: + one scale of the start's prior variance) |

The WMMSE layers run the ``wmmse`` update rule (``algorithms.wmmse``), ``subspace`` the safeguarded
subspace iteration (``algorithms.subspace``), the hybrid layers ``hybrid_pga`` (``algorithms.hybrid_pga``);
the detection layers ``sic`` and ``detnet`` (``algorithms.detection``), ``admm`` / ``admm_net`` the
``admm`` rule (``algorithms.admm``, LASSO and detection), ``learned_ep`` the ``ep`` rule
(``algorithms.ep``); the others ``pgd``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..errors import ConfigError
from ..plugins import LAYERS


@dataclass
class LearnedParam:
    """kind: "positive" (stored as log), "signed", "matrix" (learned), or "fixed" (stored with the
    model but never trained: a support-selection schedule, ALISTA's analytic matrix); init: per-layer
    values or a tensor. shared: one value for all layers (a matrix tied across layers, TiLISTA; EP's start
    variance, which only the first layer reads); logged per layer like a tied model's values."""

    kind: str
    init: object
    shared: bool = False


@dataclass(frozen=True)
class LayerType:
    """A layer type: what an unfolded network learns per layer.

    Args:
        name: the YAML name (``model.layer``).
        paradigm: the survey's paradigm it belongs to.
        learns: one line for the docs and ``--help``.
        params: ``params(problem, num_layers, steps, momentum_init) -> {name: LearnedParam}``;
            ``steps`` is the per-layer step initialisation (a list of K floats).
        problems: the problem names it applies to (None: every problem).
        positive_step: the step is learned in log space, so ``step_init`` must be > 0.
        chebyshev: ``step_init: chebyshev`` (signed steps at Chebyshev nodes) is allowed.
        needs_scaling: the parameters assume a scaled gradient (``gradient_scaling`` not ``none``).
        algorithm: the registered update rule (``autounfold.plugins.ALGORITHMS``) the layer unrolls.
        fixes: the problem dimensions (``problem.dims``) its learned parameters depend on; a model
            runs on instances of any other size (``Unfolded.check_dims``).
        digital_step: a second step (hybrid precoding's digital block) starts from
            ``model.digital_step_init`` (default: the same as ``step_init``); ``params`` then takes it
            as the keyword ``digital``.
        support_selection: the layer keeps the largest entries unshrunk (LISTA-CPSS, ALISTA);
            ``params`` takes the per-layer shares from ``model.support`` as the keyword ``support``.
        revision: raised when the update rule the layer's weights were trained for changes meaning
            (same parameters, another computation); saved models record it and ``load`` refuses one
            trained for another revision. ``revised``: what the current revision changed.
    """

    name: str
    paradigm: str
    learns: str
    params: Callable[..., Dict[str, LearnedParam]]
    problems: Optional[Tuple[str, ...]] = None
    positive_step: bool = False
    chebyshev: bool = False
    needs_scaling: bool = False
    algorithm: str = "pgd"
    fixes: Tuple[str, ...] = ()
    digital_step: bool = False
    support_selection: bool = False
    revision: int = 1
    revised: str = ""

    @property
    def tunable(self) -> bool:
        """``step_init: tuned`` applies: the start is the classical solver's tuned constants (WMMSE's
        relaxation, or a positive step and momentum of projected gradient)."""
        return self.algorithm in ("wmmse", "hybrid_pga") or (self.algorithm == "pgd" and self.positive_step)

    def applies_to(self, problem: str) -> bool:
        return self.problems is None or problem in self.problems


def layer_revision(name: str) -> int:
    """The current revision of layer type ``name`` (``LayerType.revision``; 1 for a plugin object that
    declares none)."""
    return int(getattr(LAYERS.get(name), "revision", 1))


def revision_record(name: str) -> Dict[str, int]:
    """What a saved model or training snapshot records of its layer type: ``{name: revision}``
    (read back by ``revision_mismatch``)."""
    return {name: layer_revision(name)}


def revision_mismatch(name: str, record) -> Optional[str]:
    """Why weights trained under ``record`` (a saved ``revision_record``; None or a missing entry:
    revision 1, the state before revisions were recorded) do not fit layer ``name`` now, or None."""
    recorded = (record if isinstance(record, dict) else {}).get(name, 1)
    now = layer_revision(name)
    if recorded == now:
        return None
    what = getattr(LAYERS.get(name), "revised", "") or "a changed update rule"
    return (f"its weights were trained for revision {recorded} of the {name!r} layer, this autounfold runs "
            f"revision {now} ({what})")


def chebyshev_steps(num_layers: int, edge: float) -> list:
    """Signed steps whose update polynomial prod_k (1 + alpha_k lambda) has its roots at the
    Chebyshev nodes of [0, edge]: it damps eigen-directions below ``edge`` (of the normalised
    Gram matrix) and amplifies the principal one, the classical acceleration of power iteration."""
    nodes = [edge * (1 + math.cos((2 * k + 1) * math.pi / (2 * num_layers))) / 2 for k in range(num_layers)]
    return [-1.0 / n for n in nodes]


def _per_layer(value, num_layers: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ConfigError(f"{name}: got {len(value)} per-layer values for {num_layers} layers")
        return [float(v) for v in value]
    return [float(value)] * num_layers


def _ista_thresholds(problem, steps: List[float]) -> LearnedParam:
    return LearnedParam("positive", [problem.lam / problem.lipschitz * s for s in steps])


DEFAULT_SUPPORT = (0.012, 0.13)
"""Support selection (Chen et al. 2018): at layer k (1-based) the largest min(k * 1.2 %, 13 %) of
the entries bypass the threshold."""


def support_schedule(num_layers: int, support=None) -> List[float]:
    """The share of entries that bypass the threshold at each layer: min(k * step, max), k = 1..K."""
    step, top = DEFAULT_SUPPORT if support is None else support
    return [min((k + 1) * step, top) for k in range(num_layers)]


def _alista_operator(problem) -> torch.Tensor:
    """ALISTA's W^T (N, M), scaled so that step 1 is the stable step 1 / ||W^T A||_2 (with the 1/L
    gradient scaling the update rule applies): x <- soft(x - step W^T (A x - y) / ||W^T A||_2)."""
    W = problem.alista_weight()
    norm = float(torch.linalg.matrix_norm((W.T @ problem.A).double(), ord=2))
    return (W.T * (problem.lipschitz / norm)).contiguous()


def _sparse_params(kind: str):
    """lista_cpss (W_k learned per layer), alista (analytic W, fixed), tilista (one W learned, shared):
    per-layer threshold, a step except for lista_cpss, and the support-selection schedule."""
    def params(problem, K, steps, momentum, support=None):
        out = {"threshold": _ista_thresholds(problem, steps)}
        if kind == "lista_cpss":
            out["operator.backproj"] = LearnedParam("matrix", _alista_operator(problem))
        else:
            out["step"] = LearnedParam("positive", steps)
            out["operator.backproj"] = (LearnedParam("fixed", _alista_operator(problem), shared=True) if kind == "alista"
                                        else LearnedParam("matrix", problem.A.T.clone(), shared=True))
        out["support"] = LearnedParam("fixed", support_schedule(K, support))
        return out
    return params


LAYERS.register(LayerType(
    "step", "learned hyperparameters", "step alpha_k = exp(a_k) > 0",
    lambda problem, K, steps, momentum: {"step": LearnedParam("positive", steps)}, positive_step=True))
LAYERS.register(LayerType(
    "signed", "learned hyperparameters", "step alpha_k of either sign (Chebyshev initialisation)",
    lambda problem, K, steps, momentum: {"step": LearnedParam("signed", steps)},
    problems=("beamforming",), chebyshev=True))
LAYERS.register(LayerType(
    "momentum", "learned hyperparameters", "step alpha_k > 0 and momentum beta_k",
    lambda problem, K, steps, momentum: {"step": LearnedParam("positive", steps),
                                         "momentum": LearnedParam("signed", _per_layer(momentum, K, "momentum_init"))},
    positive_step=True))
LAYERS.register(LayerType(
    "hybrid", "learned objective parameters", "step alpha_k > 0 and a matrix T_k applied to the gradient (init identity)",
    lambda problem, K, steps, momentum: {"step": LearnedParam("positive", steps),
                                         "transform": LearnedParam("matrix", torch.eye(problem.n_tx, dtype=torch.complex64))},
    problems=("beamforming",), positive_step=True, fixes=("n_tx",)))
LAYERS.register(LayerType(
    "subspace", "learned hyperparameters",
    "step alpha_k of either sign, safeguarded: never a worse Rayleigh quotient than a power-iteration step (any n_tx, n_rx)",
    lambda problem, K, steps, momentum: {"step": LearnedParam("signed", steps)},
    problems=("beamforming",), chebyshev=True, algorithm="subspace"))
LAYERS.register(LayerType(
    "subspace_momentum", "learned hyperparameters",
    "the subspace layer's safeguarded signed step alpha_k plus a heavy-ball momentum beta_k (any n_tx, n_rx, n_streams)",
    lambda problem, K, steps, momentum: {"step": LearnedParam("signed", steps),
                                         "momentum": LearnedParam("signed", _per_layer(momentum, K, "momentum_init"))},
    problems=("beamforming",), chebyshev=True, algorithm="subspace"))
LAYERS.register(LayerType(
    "ista", "learned hyperparameters", "step alpha_k > 0 and threshold theta_k > 0 (analytic W = A^T)",
    lambda problem, K, steps, momentum: {"threshold": _ista_thresholds(problem, steps),
                                         "step": LearnedParam("positive", steps)},
    problems=("lasso",), positive_step=True))
LAYERS.register(LayerType(
    "lista", "learned objective parameters", "Q_k (N, N), S_k (N, M), theta_k: x <- soft(x - (Q_k x - S_k y)/L)",
    lambda problem, K, steps, momentum: {"threshold": _ista_thresholds(problem, steps),
                                         "operator.gram": LearnedParam("matrix", problem.A.T @ problem.A),
                                         "operator.backproj": LearnedParam("matrix", problem.A.T.clone())},
    problems=("lasso",), positive_step=True, needs_scaling=True))
LAYERS.register(LayerType(
    "lista_cp", "learned objective parameters", "S_k (N, M) coupled with A, theta_k: x <- soft(x - S_k (A x - y)/L)",
    lambda problem, K, steps, momentum: {"threshold": _ista_thresholds(problem, steps),
                                         "operator.backproj": LearnedParam("matrix", problem.A.T.clone())},
    problems=("lasso",), positive_step=True, needs_scaling=True))

LAYERS.register(LayerType(
    "lista_cpss", "learned objective parameters",
    "W_k (N, M) and theta_k with support selection: x <- ss_theta_k(x - W_k (A x - y)/L) (LISTA-CPSS)",
    _sparse_params("lista_cpss"), problems=("lasso",), positive_step=True, needs_scaling=True, support_selection=True))
LAYERS.register(LayerType(
    "alista", "learned hyperparameters",
    "step gamma_k and threshold theta_k with support selection; W analytic, not learned (ALISTA)",
    _sparse_params("alista"), problems=("lasso",), positive_step=True, needs_scaling=True, support_selection=True))
LASSO_NET_HIDDEN = 8
"""Hidden units of the per-entry networks of ``alista_correction`` and ``alista_prox``."""


def _entry_net(prefix: str, inputs: int, seed: int) -> Dict[str, LearnedParam]:
    g = torch.Generator().manual_seed(seed)                # a fixed start: the same model from the same config
    return {f"{prefix}.w1": LearnedParam("matrix", torch.randn(LASSO_NET_HIDDEN, inputs, generator=g)),
            f"{prefix}.b1": LearnedParam("matrix", 0.1 * torch.randn(LASSO_NET_HIDDEN, generator=g)),
            f"{prefix}.w2": LearnedParam("matrix", torch.zeros(1, LASSO_NET_HIDDEN)),   # starts as ALISTA
            f"{prefix}.b2": LearnedParam("matrix", torch.zeros(1))}


def _alista_net(hook: str):
    base = _sparse_params("alista")

    def params(problem, K, steps, momentum, support=None):
        out = base(problem, K, steps, momentum, support)
        out.update(_entry_net(hook, 2 if hook == "correction" else 1, 13))
        return out
    return params


LAYERS.register(LayerType(
    "alista_correction", "learned correction term",
    "ALISTA plus a per-entry network (2 -> 8 -> 1, per layer) of the iterate and the step adding to the update",
    _alista_net("correction"), problems=("lasso",), positive_step=True, needs_scaling=True, support_selection=True))
LAYERS.register(LayerType(
    "alista_prox", "DNN inductive bias",
    "ALISTA with a learned prox: soft threshold plus theta_k times a per-entry network (1 -> 8 -> 1) of z / theta_k",
    _alista_net("proxnet"), problems=("lasso",), positive_step=True, needs_scaling=True, support_selection=True))
LAYERS.register(LayerType(
    "tilista", "learned objective parameters",
    "one W (N, M) shared by all layers, gamma_k and theta_k, support selection (TiLISTA)",
    _sparse_params("tilista"), problems=("lasso",), positive_step=True, needs_scaling=True, support_selection=True))


def _wmmse_params(correction: bool, net: bool, hidden: int = 8):
    def params(problem, K, steps, momentum):
        out = {"relaxation": LearnedParam("signed", steps)}
        if correction:
            out["weight_scale"] = LearnedParam("positive", [1.0] * K)
            out["weight_shift"] = LearnedParam("signed", [0.0] * K)
        if net:
            g = torch.Generator().manual_seed(0)               # a fixed start: the same model from the same config
            out["correction.w1"] = LearnedParam("matrix", 0.5 * torch.randn(3, hidden, generator=g))
            out["correction.b1"] = LearnedParam("matrix", torch.zeros(hidden))
            out["correction.w2"] = LearnedParam("matrix", torch.zeros(hidden, 2))   # starts as the identity
            out["correction.b2"] = LearnedParam("matrix", torch.zeros(2))
        return out
    return params


LAYERS.register(LayerType(
    "wmmse_relax", "learned hyperparameters", "WMMSE over-relaxation omega_k (step_init: its start, 1 = WMMSE)",
    _wmmse_params(False, False), problems=("mu_miso",), algorithm="wmmse"))
LAYERS.register(LayerType(
    "uwmmse", "learned correction term", "omega_k and the MSE-weight correction w <- a_k w + b_k (UWMMSE)",
    _wmmse_params(True, False), problems=("mu_miso",), algorithm="wmmse"))
LAYERS.register(LayerType(
    "uwmmse_gnn", "learned correction term (DNN)",
    "omega_k, a_k, b_k and a permutation-equivariant per-user MLP correcting the MSE weights",
    _wmmse_params(True, True), problems=("mu_miso",), algorithm="wmmse"))


def _hybrid_params(per_band: bool, momentum: bool):
    def params(problem, K, steps, beta, digital):
        digital = _per_layer(digital if digital is not None else steps, K, "digital_step_init")
        if per_band:
            digital = [[d] * problem.n_bands for d in digital]
        out = {"step_analog": LearnedParam("positive", steps), "step_digital": LearnedParam("positive", digital)}
        if momentum:
            out["momentum"] = LearnedParam("signed", _per_layer(beta, K, "momentum_init"))
        return out
    return params


LAYERS.register(LayerType(
    "hybrid_pga", "learned hyperparameters", "analog step mu_a_k > 0 and digital step mu_d_k > 0 (any M, L, bands, users)",
    _hybrid_params(False, False), problems=("hybrid_precoding",), positive_step=True, algorithm="hybrid_pga",
    digital_step=True))
LAYERS.register(LayerType(
    "hybrid_pga_band", "learned hyperparameters", "analog step mu_a_k and one digital step mu_d_kb per band (fixes n_bands)",
    _hybrid_params(True, False), problems=("hybrid_precoding",), positive_step=True, algorithm="hybrid_pga",
    fixes=("n_bands",), digital_step=True))
LAYERS.register(LayerType(
    "hybrid_pga_momentum", "learned hyperparameters", "mu_a_k, mu_d_k and a heavy-ball momentum beta_k on both blocks",
    _hybrid_params(False, True), problems=("hybrid_precoding",), positive_step=True, algorithm="hybrid_pga",
    digital_step=True))


RPCA_HIDDEN = 6
"""Hidden channels of the RPCA variants' two-layer CNNs (correction term, learned transform)."""


def _rpca_cnn(prefix: str, seed: int) -> Dict[str, LearnedParam]:
    g = torch.Generator().manual_seed(seed)                # a fixed start: the same model from the same config
    return {f"{prefix}.w1": LearnedParam("matrix", 0.1 * torch.randn(RPCA_HIDDEN, 4, 3, 3, generator=g)),
            f"{prefix}.b1": LearnedParam("matrix", torch.zeros(RPCA_HIDDEN)),
            f"{prefix}.w2": LearnedParam("matrix", torch.zeros(1, RPCA_HIDDEN, 3, 3)),   # starts as the classical step
            f"{prefix}.b2": LearnedParam("matrix", torch.zeros(1))}


def _rpca_params(paradigm: int):
    """The survey's four unfolded RPCA variants (section V): 1 steps and threshold; 2 + Psi_k and
    Psi_k^-1 per layer (from the solver's Psi); 3 = 1 + a CNN correction of the factor steps; 4 = 2
    with the transform made a network: Psi_k Y plus a CNN (last layer zero, so it starts at Psi)."""
    def params(problem, K, steps, momentum):
        out = {"step_L": LearnedParam("positive", steps), "step_R": LearnedParam("positive", steps),
               "threshold": LearnedParam("positive", problem.thresholds(K))}
        if paradigm in (2, 4):
            out["operator.psi"] = LearnedParam("matrix", problem.Psi_hat.clone())
            out["operator.psi_inv"] = LearnedParam("matrix", problem.Psi_hat_inv.clone())
        if paradigm == 3:
            out.update(_rpca_cnn("correction", 3))
        if paradigm == 4:
            out.update(_rpca_cnn("psinet", 4))
        return out
    return params


for _name, _paradigm, _label, _learns, _fixes in (
        ("rpca_hyper", 1, "learned hyperparameters", "steps eta_L, eta_R and threshold zeta per layer", ()),
        ("rpca_objective", 2, "learned objective parameters", "eta_L, eta_R, zeta and Psi_k, Psi_k^-1 (n1 x n1) per layer", ("n1",)),
        ("rpca_correction", 3, "learned correction term", "eta_L, eta_R, zeta and a two-layer CNN correcting the factor steps", ()),
        ("rpca_dnn", 4, "DNN inductive bias",
         "eta_L, eta_R, zeta, Psi_k, Psi_k^-1; the transform is Psi_k Y + a two-layer CNN of (X, L R^T, Psi_k Y, residual)", ("n1",))):
    LAYERS.register(LayerType(_name, _label, _learns, _rpca_params(_paradigm), problems=("rpca",), positive_step=True,
                              algorithm="rpca", fixes=_fixes))


DEEPSIC_HIDDEN = 16
"""Hidden units of each DeepSIC block's MLP (one block per user and iteration)."""
DETNET_HIDDEN = 32
"""Hidden units of DetNet's per-layer network (shared by the users)."""


def _deepsic_params(problem, K, steps, momentum):
    """Per layer the SIC step's two noise inflations, absolute and relative to the received power
    (``algorithms.detection.SoftIC``; both 1e-3 at the start); per user (U) and layer the
    variance calibration nu' = a nu + f (a = 1, f = 1e-3 at the start) and a two-layer MLP whose last
    layer starts at zero: the untrained network is SIC up to the 1e-3 terms (``algorithms.detection``)."""
    U, C = problem.n_users, problem.num_points
    F = 4 + C
    g = torch.Generator().manual_seed(21)                  # a fixed start: the same model from the same config
    return {"deepsic.noise": LearnedParam("positive", [1e-3] * K),
            "deepsic.noise_relative": LearnedParam("positive", [1e-3] * K),
            "deepsic.scale": LearnedParam("positive", [[1.0] * U] * K),
            "deepsic.floor": LearnedParam("positive", [[1e-3] * U] * K),
            "deepsic.w1": LearnedParam("matrix", torch.randn(U, F, DEEPSIC_HIDDEN, generator=g) / math.sqrt(F)),
            "deepsic.b1": LearnedParam("matrix", torch.zeros(U, DEEPSIC_HIDDEN)),
            "deepsic.w2": LearnedParam("matrix", torch.zeros(U, DEEPSIC_HIDDEN, C)),
            "deepsic.b2": LearnedParam("matrix", torch.zeros(U, C))}


def _detnet_params(problem, K, steps, momentum):
    from ..algorithms.detection import DetNetStep
    C, D = problem.num_points, DetNetStep.state_size
    F = 3 + C + D
    g = torch.Generator().manual_seed(22)
    return {"step": LearnedParam("positive", steps), "temperature": LearnedParam("positive", [1.0] * K),
            "detnet.w1": LearnedParam("matrix", torch.randn(F, DETNET_HIDDEN, generator=g) / math.sqrt(F)),
            "detnet.b1": LearnedParam("matrix", torch.zeros(DETNET_HIDDEN)),
            "detnet.w2": LearnedParam("matrix", 0.01 * torch.randn(DETNET_HIDDEN, C + D, generator=g)),
            "detnet.b2": LearnedParam("matrix", torch.zeros(C + D))}


LAYERS.register(LayerType(
    "sic_damped", "learned hyperparameters",
    "soft interference cancellation with a learned damping beta_k and noise inflations per layer (absolute d_k and "
    "relative to the received power r_k)",
    lambda problem, K, steps, momentum: {"damping_logit": LearnedParam("signed", [-3.0] * K),
                                         "noise_inflation": LearnedParam("positive", [1e-3] * K),
                                         "noise_relative": LearnedParam("positive", [1e-3] * K)},
    problems=("detection",), algorithm="sic"))
LAYERS.register(LayerType(
    "deepsic", "DNN inductive bias",
    "DeepSIC: per user and layer, a calibrated Gaussian likelihood (variance a nu + f) + an MLP (4 + C -> 16 -> C) of the "
    "SIC step's statistics, softmax over the constellation (fixes n_users)",
    _deepsic_params, problems=("detection",), algorithm="sic", fixes=("n_users",)))
LAYERS.register(LayerType(
    "deepsic_mix", "DNN inductive bias",
    "DeepSIC on the mixture SIC (sic_mix: each user's strongest residual interferer j exact, the rest Gaussian with "
    "the calibrated variance a (nu - |L_uj|^2 v_j) + f) + the same MLP (fixes n_users)",
    _deepsic_params, problems=("detection",), algorithm="sic_mix", fixes=("n_users",)))
LAYERS.register(LayerType(
    "detnet", "DNN inductive bias",
    "DetNet: LMMSE-preconditioned gradient step delta_k, soft projection with calibration tau_k and an MLP "
    "(3 + C + 8 -> 32 -> C + 8) shared by the users (any U, n_rx)", _detnet_params, problems=("detection",), positive_step=True, algorithm="detnet",
    revision=2, revised="the gradient step's LMMSE preconditioner uses each user's posterior variance, not their mean (2026-12-06)"))


def _admm_params(net: bool):
    """ADMM (``algorithms.admm``): per layer the penalty rho_k > 0 (from ``step_init``) and the
    over-relaxation alpha_k (1); detection adds the readout calibration tau_k (1). ADMM-Net adds, on the
    LASSO, the threshold theta_k (from the classical lam / (rho L)) and, on detection, the soft
    projection towards the constellation: its weight gamma_k (0: the box) and temperature t_k (0.1).
    On detection the last layer's alpha, gamma and t act after the output is read (``algorithms.admm``)
    and stay at their start."""
    def params(problem, K, steps, momentum):
        out = {"penalty": LearnedParam("positive", steps), "relaxation": LearnedParam("signed", [1.0] * K)}
        if problem.name == "detection":
            out["temperature"] = LearnedParam("positive", [1.0] * K)
            if net:
                out["projection_mix"] = LearnedParam("signed", [0.0] * K)
                out["projection_temperature"] = LearnedParam("positive", [0.1] * K)
        elif net:
            out["threshold"] = LearnedParam("positive", [problem.lam / (s * problem.lipschitz) for s in steps])
        return out
    return params


LAYERS.register(LayerType(
    "admm", "learned hyperparameters", "ADMM with a learned penalty rho_k and over-relaxation alpha_k per layer "
    "(detection: and the readout calibration tau_k); any size", _admm_params(False), problems=("lasso", "detection"),
    positive_step=True, algorithm="admm"))
LAYERS.register(LayerType(
    "admm_net", "learned hyperparameters", "ADMM-Net: rho_k, alpha_k and the z-update's parameters per layer: the "
    "LASSO's threshold theta_k; detection's soft projection towards the constellation (weight gamma_k, temperature t_k)",
    _admm_params(True), problems=("lasso", "detection"), positive_step=True, algorithm="admm"))
def _ep_params(name: str, scaled: bool, prior: bool = False):
    """Learned EP (``algorithms.ep``): per iteration the damping beta_k (its logit; start ``step_init``,
    which must be in (0, 1): Sionna's is 0.9), the variance floor f_k (1e-6) and the output temperature
    tau_k (1); ``scaled`` adds the cavity-variance scale s_k (1); ``prior`` one scale c of the start's
    prior variance (1, shared: only the first iteration reads it). The last layer's damping acts after
    the output is read (``algorithms.ep``) and stays at its start."""
    def params(problem, K, steps, momentum):
        if not all(0.0 < b < 1.0 for b in steps):
            raise ConfigError(f"layer {name!r}: step_init is EP's damping and must be in (0, 1) (got {steps})")
        out = {"damping_logit": LearnedParam("signed", [math.log(b / (1.0 - b)) for b in steps]),
               "variance_floor": LearnedParam("positive", [1e-6] * K),
               "temperature": LearnedParam("positive", [1.0] * K)}
        if scaled:
            out["obs_scale"] = LearnedParam("positive", [1.0] * K)
        if prior:
            out["prior_scale"] = LearnedParam("positive", [1.0], shared=True)
        return out
    return params


LAYERS.register(LayerType(
    "learned_ep", "learned hyperparameters", "expectation propagation with a learned damping beta_k (start: step_init), "
    "variance floor f_k and output temperature tau_k per iteration; any U, n_rx",
    _ep_params("learned_ep", False), problems=("detection",), positive_step=True, algorithm="ep"))
LAYERS.register(LayerType(
    "learned_ep_scaled", "learned hyperparameters", "learned_ep and a scale s_k of EP's cavity variance per iteration",
    _ep_params("learned_ep_scaled", True), problems=("detection",), positive_step=True, algorithm="ep"))
LAYERS.register(LayerType(
    "learned_ep_prior", "learned hyperparameters", "learned_ep_scaled and one learned scale of the prior variance "
    "EP starts from (the initial variance of Chen et al.'s MEPNet)",
    _ep_params("learned_ep_prior", True, prior=True), problems=("detection",), positive_step=True, algorithm="ep"))


def layer_params(layer: str, problem, num_layers: int, step_init, momentum_init=0.0,
                 scaling: Optional[str] = None, digital_step_init=None, support=None) -> Dict[str, LearnedParam]:
    """The learned parameters of the registered layer type ``layer`` for ``problem``; ``step_init``
    is a scalar, a list of one value per layer, or "chebyshev" (layer types that allow it, with a
    scaled gradient)."""
    decl = LAYERS.get(layer)
    if not decl.applies_to(problem.name):
        raise ConfigError(f"layer {layer!r} applies to {', '.join(decl.problems)} (got {problem.name!r})")
    if decl.needs_scaling and not scaling:
        raise ConfigError(f"layer {layer!r} needs a gradient scaling (its matrices are scaled by 1/L)")
    if step_init == "chebyshev":
        if not decl.chebyshev or not hasattr(problem, "spectrum_edge") or scaling is None:
            raise ConfigError("step_init 'chebyshev' needs a layer that allows it (signed), a scaled gradient and a "
                              f"problem with a spectrum_edge (got layer {layer!r}, scaling {scaling!r} on {problem.name!r})")
        steps = chebyshev_steps(num_layers, problem.spectrum_edge(scaling))
    else:
        steps = _per_layer(step_init, num_layers, "step_init")
    if decl.positive_step and min(steps) <= 0:
        raise ConfigError(f"layer {layer!r} learns a positive step: step_init must be > 0 (got {step_init})")
    if decl.digital_step:
        digital = None if digital_step_init is None else _per_layer(digital_step_init, num_layers, "digital_step_init")
        if digital is not None and decl.positive_step and min(digital) <= 0:
            raise ConfigError(f"layer {layer!r} learns a positive digital step: digital_step_init must be > 0 "
                              f"(got {digital_step_init})")
        return decl.params(problem, num_layers, steps, momentum_init, digital)
    if digital_step_init is not None:
        raise ConfigError(f"digital_step_init applies to layers with a digital step (hybrid_pga...), not {layer!r}")
    if decl.support_selection:
        return decl.params(problem, num_layers, steps, momentum_init, support=support)
    if support is not None:
        raise ConfigError(f"support applies to layers with support selection (lista_cpss, alista, tilista), not {layer!r}")
    return decl.params(problem, num_layers, steps, momentum_init)
