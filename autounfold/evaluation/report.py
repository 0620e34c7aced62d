"""Markdown pieces shared by the benchmark jobs' reports."""
from __future__ import annotations

from typing import List


def fmt(v, digits: int = 2) -> str:
    """A table cell: a float with ``digits`` decimals, a dash for None, anything else as str."""
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def bars_markdown(bars: List[dict], unit: str = "dB") -> List[str]:
    """The "## Bars" section: one row per ``{"bar", "measured", "met"}`` (``measured`` None: not
    measurable, shown as a dash); no lines when there are none."""
    if not bars:
        return []

    def value(v):
        return "—" if v is None else f"{v:.2f} {unit}"
    return (["## Bars", "", "| bar | measured | met |", "|---|---|---|"]
            + [f"| {b['bar']} | {value(b['measured'])} | {'yes' if b['met'] else 'no'} |" for b in bars])
