"""Markdown pieces shared by the benchmark jobs' reports."""
from __future__ import annotations

from typing import List


def bars_markdown(bars: List[dict], unit: str = "dB") -> List[str]:
    """The "## Bars" section: one row per ``{"bar", "measured", "met"}``; no lines when there are none."""
    if not bars:
        return []
    return (["## Bars", "", "| bar | measured | met |", "|---|---|---|"]
            + [f"| {b['bar']} | {b['measured']:.2f} {unit} | {'yes' if b['met'] else 'no'} |" for b in bars])
