"""Layer types of unfolded belief propagation (``problems.decoding``, update rule ``algorithms.bp``).

| layer          | paradigm (survey)       | learned per layer (iteration)                                          |
|----------------|-------------------------|------------------------------------------------------------------------|
| neural_bp      | learned hyperparameters | weighted BP (Nachmani): per iteration, one weight per base-graph edge on the variable-to-check and one on the check-to-variable messages, one per base-graph column on the channel LLR (fixes n, k: the code) |
| neural_bp_tied | learned hyperparameters | the same weights, one set shared by all iterations (fixes n, k)         |
| bp_scalar      | learned hyperparameters | one weight per iteration on every check-to-variable message (normalised BP; any code) |

Every weight starts at 1: the untrained network is classical BP (the boxplus check-node update).
The per-edge weights are stored as ``matrix`` parameters (K, num_edge_types) x 2 and (K, num_vn_types) (one
row when tied), so they train at ``training.lr`` and are not logged per entry; ``scale`` is a
per-iteration scalar (``signed``).
"""
from __future__ import annotations

import torch

from ..plugins import LAYERS
from .layers import LayerType, LearnedParam


def _weighted(tied: bool):
    def params(problem, K, steps, momentum):
        g = problem.graph
        return {"v2c_weight": LearnedParam("matrix", torch.ones(g.num_edge_types), shared=tied),
                "c2v_weight": LearnedParam("matrix", torch.ones(g.num_edge_types), shared=tied),
                "channel_weight": LearnedParam("matrix", torch.ones(g.num_vn_types), shared=tied)}
    return params


LAYERS.register(LayerType(
    "neural_bp", "learned hyperparameters",
    "weighted BP: per iteration one weight per base-graph edge on the variable-to-check and on the check-to-variable "
    "messages and one per base-graph column on the channel LLR (init 1 = BP; fixes n, k)",
    _weighted(False), problems=("decoding",), algorithm="bp", fixes=("n", "k")))
LAYERS.register(LayerType(
    "neural_bp_tied", "learned hyperparameters",
    "weighted BP with one set of edge and channel weights shared by all iterations (init 1 = BP; fixes n, k)",
    _weighted(True), problems=("decoding",), algorithm="bp", fixes=("n", "k")))
LAYERS.register(LayerType(
    "bp_scalar", "learned hyperparameters",
    "one weight per iteration on every check-to-variable message (normalised BP, init 1 = BP; any code)",
    lambda problem, K, steps, momentum: {"scale": LearnedParam("signed", [1.0] * K)},
    problems=("decoding",), algorithm="bp"))
