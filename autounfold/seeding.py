"""Deterministic seed derivation: every random stream is a pure function of (seed, purpose, index).

Streams with different purposes ("train/trial-3", "validation", "test") are derived through
SHA-256, so they never share a generator state; the same arguments give bit-identical tensors.
"""
from __future__ import annotations

import hashlib

import torch


SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
"""The seeds a config accepts: what ``torch.manual_seed`` takes."""


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and any labels, stable across processes and machines."""
    text = ":".join([str(int(seed))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(seed, *parts)``.

    Draws happen on the CPU and are moved to the target device afterwards, so a replay is
    bit-identical whatever device the trial later runs on.
    """
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, *parts))
    return g


def as_generator(seed_or_gen: "int | torch.Generator") -> torch.Generator:
    if isinstance(seed_or_gen, torch.Generator):
        return seed_or_gen
    if isinstance(seed_or_gen, bool) or not isinstance(seed_or_gen, int):
        raise TypeError(f"expected an int seed or a torch.Generator, got {type(seed_or_gen).__name__}")
    return generator(seed_or_gen)
