"""Benchmark figures (PNG): SE vs layer/iteration, SE vs latency (Pareto), learned steps per layer."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, ax, path: Path, **legend) -> str:
    """Grid, legend (``legend``: extra ``ax.legend`` arguments, e.g. its placement), tight layout, write
    the PNG, free the figure; returns the file name."""
    ax.grid(alpha=0.3)
    ax.legend(**{"fontsize": 7, **legend})
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def line_curves(series: dict, xlabel: str, ylabel: str, path: Path, title: str = "") -> str:
    """One line per ``{name: (x, values)}`` (markers where a line has fewer than 10 points), saved to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, values) in series.items():
        ax.plot(x, values, marker="o" if len(values) < 10 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, ax, path)


def latency_scatter(rows: list, score_key: str, batch: int, ylabel: str, path: Path) -> str:
    """Score against median latency (log axis), one annotated point per ``rows`` entry (a latency
    table's rows: ``method``, ``median_ms`` and ``score_key``), saved to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["median_ms"], r[score_key])
        ax.annotate(r["method"], (r["median_ms"], r[score_key]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, ms (batch {batch})")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def write_plots(result: dict, out: Path) -> list:
    bf = result["beamforming"]
    files = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in bf["curves"].items():
        ax.plot(range(1, len(curve) + 1) if "article" in name else range(len(curve)), curve, marker=None if "article" in name else "o",
                ms=3, label=name)
    ax.set_xscale("symlog", linthresh=12)
    ax.set_xlabel("layer / iteration")
    ax.set_ylabel("SE, % of optimum")
    ax.set_ylim(bottom=max(50, min(min(c) for c in bf["curves"].values())))
    files.append(_save(fig, ax, out / "se_vs_layer.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind in sorted({r["kind"] for r in bf["rows"]}):
        rs = [r for r in bf["rows"] if r["kind"] == kind and r["pct_of_optimum"] > 95]
        if rs:
            ax.scatter([r["latency_median_ms"] for r in rs], [r["pct_of_optimum"] for r in rs], label=kind, s=18)
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, ms (batch {bf['latency_setup']['batch']}, CPU)")
    ax.set_ylabel("SE, % of optimum")
    files.append(_save(fig, ax, out / "se_vs_latency.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, info in bf["learned"].items():
        if name.endswith("-5") and "step" in info["params"]:
            ax.plot(range(1, 6), info["params"]["step"], marker="o", label=name)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("learned step alpha_k (normalised gradient)")
    files.append(_save(fig, ax, out / "learned_steps.png"))
    return files
