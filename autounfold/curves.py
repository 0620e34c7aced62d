"""Reading error-rate curves: where a curve that falls with the SNR (SER, BLER) first crosses a target.

Used by the benchmarks (the SNR at SER 1e-2, the Eb/N0 at BLER 1e-2 / 1e-3) and by ``training.refine``'s
``crossing`` (the band its draw is centred on), so both read a curve the same way.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence


def snr_at(snrs: Sequence[float], sers: Sequence[float], target: float = 1e-2, floor: float = 1e-6) -> Optional[float]:
    """The SNR (dB) where the curve first crosses ``target``, interpolating log10(SER) linearly between
    the two grid points around the crossing; None if it never gets down to it on the grid (a NaN
    point counts as not reached). A SER of 0 (no error in the test draw) is taken as ``floor`` (half
    an error: pass 0.5 / symbols), not as 1e-12, which would pull the crossing onto the previous
    point. A curve already at or below the target at its first point returns that point: an upper
    bound (``crossing_kind`` says which)."""
    for i, (s, e) in enumerate(zip(snrs, sers)):
        if e == e and e <= target:                                      # e == e: not NaN
            if i == 0:
                return float(s)
            s0, e0 = snrs[i - 1], sers[i - 1]
            l0, l1, lt = math.log10(max(e0, floor)), math.log10(max(e, floor)), math.log10(target)
            return float(s0 + (s - s0) * (l0 - lt) / max(l0 - l1, 1e-12))
    return None


def crossing_kind(snrs: Sequence[float], sers: Sequence[float], target: float = 1e-2) -> str:
    """"crossing" (interpolated), "below" (the first point is already below the target: the SNR is an
    upper bound) or "never" (not reached on the grid: the SNR is above the last point)."""
    if sers and sers[0] == sers[0] and sers[0] <= target:
        return "below"
    return "crossing" if snr_at(snrs, sers, target) is not None else "never"
