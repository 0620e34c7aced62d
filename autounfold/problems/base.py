"""What a problem plugin supplies to algorithms, unfolded networks, training and evaluation."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch


class Problem:
    """Interface of a problem plugin.

    ``sense`` is +1 for a maximisation (spectral efficiency) and -1 for a minimisation (LASSO):
    algorithms step along ``sense * gradient``, so the sign always follows the objective.

    Methods (``inst`` is the problem's instance type, ``x`` a batch of iterates, B samples):
        sample(batch, seed, device) -> inst          fresh random instances
        instance(*inputs) -> inst                     validated instance from raw tensors
        objective(x, inst) -> (B,)                    the objective value
        gradient(x, inst, operator=None) -> like x    analytic gradient (real gradient in complex form)
        curvature(x, inst) -> (B,)                    cheap upper bound on the local Lipschitz constant
        prox(z, inst, threshold=None) -> like x       projection onto the feasible set / proximal map
        init(inst, method=None) -> x0
        reference(inst) -> x_ref                      closed form, or a classical solver run to convergence
        supervised_loss(x, inst, x_ref) -> (B,)
        metrics(x, inst, x_ref) -> dict of (B,) tensors
    """

    name = "problem"
    sense = 1.0

    def settings(self) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient_direction(self, x, inst, operator: Optional[dict] = None) -> torch.Tensor:
        """``sense * gradient``: the direction that improves the objective."""
        return self.sense * self.gradient(x, inst, operator)


def batch_scalar(value, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a python scalar, a 0-d tensor or a (B,) tensor against ``like`` (B, ...)."""
    t = torch.as_tensor(value, dtype=like.real.dtype, device=like.device)
    if t.dim() == 1:
        t = t.view(-1, *([1] * (like.dim() - 1)))
    return t
