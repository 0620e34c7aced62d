"""The unfolded network: the algorithm's own update rule applied K times with learned parameters."""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..plugins import LAYERS
from .layers import LearnedParam, layer_params


def _lookup(values: dict, name: str):
    """``values[name]``, or ``values[group][key]`` for a grouped name ``group.key``."""
    if name in values:
        return values[name]
    group, key = name.split(".", 1)
    return values[group][key]


def check_conditioning(problem, algorithm, field: str = "snr_knots") -> None:
    """ConfigError unless per-layer scalars may be conditioned on the instance (``model.snr_knots``,
    ``model.cond_knots``): the problem's instances carry their SNR (``Problem.instance_snr``), or for
    ``cond_knots`` the problem has ``log_condition``, and the update rule takes one value per sample
    (``per_sample``)."""
    if field == "cond_knots":
        if not callable(getattr(problem, "log_condition", None)):
            raise ConfigError(f"model.cond_knots: {problem.name} has no channel conditioning to condition on "
                              "(no log_condition); set model.cond_knots to 0")
    else:
        snr = problem.instance_snr
        if not (problem.draws_channels if snr is None else snr):
            raise ConfigError(f"model.snr_knots: {problem.name} instances carry no SNR to condition on; "
                              "set model.snr_knots to 0")
    if not getattr(algorithm, "per_sample", False):
        raise ConfigError(f"model.{field}: the update rule {algorithm.name!r} takes one value per layer, "
                          f"not one per sample; set model.{field} to 0")


def hat_weights(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation weights of x (B,) on ``knots`` (n,) increasing, (B, n), rows summing
    to 1: hat functions, x clamped to [first, last] knot (tensor bounds: no value is read out of the
    knots, so torch.export traces it and CUDA does not synchronise)."""
    k = knots
    s = torch.minimum(torch.maximum(x.to(k.dtype), k[0]), k[-1]).unsqueeze(-1)
    left = torch.cat([k[:1] - 1.0, k[:-1]])
    right = torch.cat([k[1:], k[-1:] + 1.0])
    return torch.minimum((s - left) / (k - left), (right - s) / (right - k)).clamp(0.0, 1.0)


def knot_names(knots) -> List[str]:
    """How the knots are named in logged parameters (``step.snr10dB``): %g of the SNR, or its repr
    where two knots would print alike."""
    names = [f"{float(k):g}" for k in knots]
    return names if len(set(names)) == len(names) else [repr(float(k)) for k in knots]


class Unfolded(nn.Module):
    """K unrolled iterations of ``algorithm.step`` with per-layer learned parameters.

    Args:
        problem: the problem plugin (supplies gradient, prox, init and input validation).
        algorithm: the update rule (``ProximalGradient``, ``WMMSE``: ``autounfold.plugins.ALGORITHMS``);
            the classical solver runs the same object.
        num_layers: depth K >= 1.
        layer: a registered layer type (``autounfold.plugins.LAYERS``, see ``unfolding.layers``).
        tied: share one set of parameters across all layers.
        step_init: scalar, one value per layer, or "chebyshev" (signed layers).
        momentum_init: initial beta (momentum layers).
        snr_knots: None, or >= 2 increasing SNRs in dB: every per-layer scalar (a value per layer, or
            one tied value) becomes a function of the sample's SNR, piecewise linear between its
            values at the knots and constant beyond the end knots (positive ones are interpolated in
            log space); each knot starts at the layer's initial value, so the network starts as
            without knots. Needs a problem whose instances carry ``snr_db`` (``Problem.instance_snr``)
            and an update rule that takes per-sample parameters (``per_sample``).
        cond_knots: None, or >= 2 increasing values of the channel's conditioning (``problem.log_condition``:
            log10 of tr(A) tr(A^-1) / m^2, A the Gram matrix, regularised as RZF's for MU-MISO): the same on
            that feature; with both, each scalar has a value per (SNR knot, condition knot) pair, interpolated
            bilinearly.

    Call:
        ``model(*inputs)`` validates raw inputs through ``problem.instance`` (beamforming:
        ``model(H, noise_var)`` with H (B, n_rx, n_tx) complex64, noise_var (B,) float32, returns
        W (B, n_tx, n_streams) complex64 inside the constraint set); ``return_all=True`` returns
        the list of the K iterates instead.
    """

    def __init__(self, problem, algorithm, num_layers: int, layer: str = "step",
                 tied: bool = False, step_init=1.0, momentum_init=0.0, digital_step_init=None, support=None,
                 snr_knots=None, cond_knots=None):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ConfigError(f"num_layers must be an integer >= 1 (got {num_layers!r})")
        self.problem, self.algorithm, self.num_layers, self.layer, self.tied = problem, algorithm, num_layers, layer, tied
        specs = layer_params(layer, problem, num_layers, step_init, momentum_init, algorithm.normalize,
                             digital_step_init, support)
        self.kinds = {name: spec.kind for name, spec in specs.items()}
        self.shared = {name for name, spec in specs.items() if spec.shared or (tied and spec.kind != "fixed")}
        self.knotted = set()
        for field, knots in (("snr_knots", snr_knots), ("cond_knots", cond_knots)):
            if knots is None:
                setattr(self, field, None)
                continue
            if len(knots) < 2 or any(b <= a for a, b in zip(knots, knots[1:])):
                raise ConfigError(f"model.{field}: needs >= 2 strictly increasing values (got {list(knots)})")
            check_conditioning(problem, algorithm, field)
            self.register_buffer(field, torch.tensor([float(v) for v in knots]))
        if snr_knots is not None or cond_knots is not None:
            self.knotted = {name for name, spec in specs.items()
                            if spec.kind in ("positive", "signed") and not isinstance(spec.init, torch.Tensor)
                            and all(isinstance(v, (int, float)) for v in spec.init)}
            if not self.knotted:
                raise ConfigError(f"model.snr_knots / cond_knots: layer {layer!r} has no per-layer scalar to condition")
        self.params = nn.ParameterDict()
        for name, spec in specs.items():
            self.params[name.replace(".", "__")] = nn.Parameter(self._initial(spec, name in self.shared, name in self.knotted),
                                                                requires_grad=spec.kind != "fixed")
        self.fixed = {} if "step" in specs else {"step": 1.0}

    def _initial(self, spec: LearnedParam, shared: bool, knotted: bool = False) -> torch.Tensor:
        if isinstance(spec.init, torch.Tensor):
            init = spec.init.unsqueeze(0)
            return init.clone() if shared else init.repeat(self.num_layers, *([1] * spec.init.dim()))
        values = torch.tensor(spec.init, dtype=torch.float32)
        if spec.kind == "positive":
            values = values.log()
        values = values[:1].clone() if shared else values
        return values.unsqueeze(-1).repeat(1, self.num_knots) if knotted else values

    @property
    def num_knots(self) -> int:
        """Values per conditioned scalar: (SNR knots or 1) x (condition knots or 1)."""
        return ((1 if self.snr_knots is None else len(self.snr_knots))
                * (1 if self.cond_knots is None else len(self.cond_knots)))

    def knot_labels(self) -> List[str]:
        """The name suffix of each value of a conditioned scalar (``snr10dB``, ``cond1.2``, both joined by '.'),
        in storage order (SNR major)."""
        snr = [] if self.snr_knots is None else [f"snr{n}dB" for n in knot_names(self.snr_knots.tolist())]
        cond = [] if self.cond_knots is None else [f"cond{n}" for n in knot_names(self.cond_knots.tolist())]
        if snr and cond:
            return [f"{a}.{b}" for a in snr for b in cond]
        return snr or cond

    def snr_weights(self, snr_db: torch.Tensor) -> torch.Tensor:
        """The SNR knots' interpolation weights at each sample's SNR, (B, n) float32 (``hat_weights``)."""
        return hat_weights(snr_db, self.snr_knots)

    def knot_weights(self, inst) -> Optional[torch.Tensor]:
        """Each sample's weights over a conditioned scalar's values, (B, num_knots) (rows sum to 1): the SNR
        hat weights, the condition-number hat weights, or their outer product; None without knots."""
        w = None if self.snr_knots is None else self.snr_weights(inst.snr_db)
        if self.cond_knots is not None:
            c = hat_weights(self.problem.log_condition(inst), self.cond_knots)
            w = c if w is None else (w.unsqueeze(-1) * c.unsqueeze(-2)).flatten(-2)
        return w

    def knotted_values(self, weights: torch.Tensor) -> dict:
        """Every conditioned scalar at every layer for the knot weights ``weights`` (B, num_knots), constrained:
        {name: (B, K)} (one product per scalar for all layers; ``run`` hands them to ``layer_values``)."""
        out = {}
        for name in self.knotted:
            v = weights @ self.params[name.replace(".", "__")].mT                      # (B, K or 1)
            out[name] = v.exp() if self.kinds[name] == "positive" else v
        return out

    def layer_values(self, k: int, weights: Optional[torch.Tensor] = None, knotted: Optional[dict] = None) -> dict:
        """The update rule's parameters at layer k (0-based), constrained (positive steps exponentiated).
        A conditioned scalar is (B,) at the knot weights ``weights`` (``knot_weights``), or its
        (num_knots,) values at the knots without them; ``knotted`` (``knotted_values``) gives it
        precomputed for all layers."""
        out = dict(self.fixed)
        for key, raw in self.params.items():
            name = key.replace("__", ".")
            layer = 0 if name in self.shared else k
            if knotted is not None and name in knotted:
                v = knotted[name][:, layer]
            else:
                v = raw[layer]
                if weights is not None and name in self.knotted:
                    v = weights @ v
                if self.kinds[name] == "positive":
                    v = v.exp()
            if "." in name:                       # grouped: operator.gram -> out["operator"]["gram"]
                group, key = name.split(".", 1)
                out.setdefault(group, {})[key] = v
            else:
                out[name] = v
        return out

    def scalar_parameters(self) -> dict:
        """Per-layer scalar values for logging and plots: {name: [K floats]}; a parameter with one
        value per band (or other index j) gives {name.bj: [K floats]}."""
        out = {}
        with torch.no_grad():
            for name, kind in self.kinds.items():
                if kind == "matrix" or self.params[name.replace(".", "__")].dim() > 2:
                    continue
                values = [_lookup(self.layer_values(k), name).reshape(-1) for k in range(self.num_layers)]
                if name in self.knotted:
                    for j, label in enumerate(self.knot_labels()):
                        out[f"{name}.{label}"] = [float(v[j]) for v in values]
                elif values[0].numel() == 1:
                    out[name] = [float(v) for v in values]
                else:
                    for j in range(values[0].numel()):
                        out[f"{name}.b{j}"] = [float(v[j]) for v in values]
        return out

    def restrict_grad(self, layer: int) -> None:
        """Zero the gradients of every layer but ``layer`` (0-based), stagewise training's "new
        layer alone" stage; parameters shared by all layers train only with the first layer."""
        for key, p in self.params.items():
            if p.grad is None:
                continue
            if key.replace("__", ".") in self.shared:
                if layer > 0:
                    p.grad.zero_()
            else:
                keep = p.grad[layer].clone()
                p.grad.zero_()
                p.grad[layer] = keep

    def run(self, inst, return_all: bool = False, num_layers: Optional[int] = None):
        """Apply the first ``num_layers`` layers (default all) to a validated problem instance. The
        state starts from ``algorithm.start(problem, inst)`` where the rule has that shortcut and it
        applies (it returns None otherwise), else from ``algorithm.init_state(problem.init(inst))``."""
        K = self.num_layers if num_layers is None else num_layers
        start = getattr(self.algorithm, "start", None)
        state = start(self.problem, inst) if callable(start) else None
        if state is None:
            state = self.algorithm.init_state(self.problem.init(inst))
        weights = self.knot_weights(inst)
        knotted = None if weights is None else self.knotted_values(weights)
        iterates: List[torch.Tensor] = []
        for k in range(K):
            state = self.algorithm.step(self.problem, inst, state, self.layer_values(k, weights, knotted))
            if return_all:
                iterates.append(state.x)
        return iterates if return_all else state.x

    def forward(self, *inputs, return_all: bool = False):
        inst = self.problem.instance(*inputs)
        self.check_dims(inst)
        out = self.run(inst, return_all=return_all)
        return [self.problem.output(x, inst) for x in out] if return_all else self.problem.output(out, inst)

    def check_dims(self, inst) -> None:
        """InputError unless ``inst`` has the sizes this model's learned parameters were built for
        (the layer type's ``fixes``); every other size is free (a model of per-layer scalars runs on
        any antenna count)."""
        fixes = LAYERS.get(self.layer).fixes
        if not fixes:
            return
        have = self.problem.dims(inst)
        for dim in fixes:
            want = getattr(self.problem, dim)
            if have.get(dim) != want:
                shapes = ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in self.params.items() if v.dim() > 2)
                raise InputError(f"the input has {dim}={have.get(dim)}, but this model's learned parameters of layer "
                                 f"{self.layer!r} ({shapes}) fix {dim}={want}")

    def num_parameters(self) -> int:
        """Real-valued trainable parameters (a complex entry counts twice; fixed ones not at all)."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters() if p.requires_grad)
