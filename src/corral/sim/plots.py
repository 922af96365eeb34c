"""PNG plots of simulation results (matplotlib, the `sim` extra; imported only when plotting).

- `fill_curves`: GPU allocation against arrived demand, one line per policy.
- `replay_timeline`: queue length and GPU allocation over time, one line per policy.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to get it."""


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotUnavailable("plots need matplotlib: pip install 'corral[sim]'") from None
    matplotlib.use("Agg")  # files only: never open a window
    return importlib.import_module("matplotlib.pyplot")


def fill_curves(runs: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Allocation (%) against arrived demand (% of capacity) for fill results (their JSON)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in runs:
        curve = r["curve"]
        x = [p["arrived_pct"] for p in curve]
        y = [p["allocation_pct"] for p in curve]
        ax.plot(x, y, label=f"{r['policy']} ({r['final_allocation_pct']:.2f}%)", linewidth=1.4)
    ax.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=0.8, label="ideal")
    ax.set_xlabel("arrived GPU demand (% of capacity)")
    ax.set_ylabel("GPU allocation (%)")
    ax.set_xlim(0, max((p["arrived_pct"] for r in runs for p in r["curve"]), default=130))
    lo = min((p["allocation_pct"] for r in runs for p in r["curve"] if p["arrived_pct"] >= 80),
             default=0.0)
    inset = ax.inset_axes([0.52, 0.08, 0.45, 0.42])
    for r in runs:
        pts = [p for p in r["curve"] if p["arrived_pct"] >= 80]
        inset.plot([p["arrived_pct"] for p in pts], [p["allocation_pct"] for p in pts],
                   linewidth=1.2)
    inset.set_ylim(max(lo - 1, 0), 100)
    inset.tick_params(labelsize=7)
    ax.set_title(title or "fill: allocation against arrived demand")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def replay_timeline(
    series: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = ""
) -> Path:
    """Queue length and allocated GPUs over time; `series` maps a policy to its time series."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), dpi=120, sharex=True)
    for policy, s in series.items():
        hours = [t / 3600.0 for t in s["time_s"]]
        top.plot(hours, s["pending"], label=policy, linewidth=1.0)
        bottom.plot(hours, s["allocated_gpus"], label=policy, linewidth=1.0)
    top.set_ylabel("waiting tasks")
    bottom.set_ylabel("allocated GPUs")
    bottom.set_xlabel("time (hours from the first arrival)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    top.set_title(title or "replay: queue length and allocation over time")
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
