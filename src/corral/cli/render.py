"""Rich tables for workloads, nodes and queues."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from corral.sdk import models as M

__all__ = ["ago", "nodes_table", "providers_table", "queues_table", "state_text",
           "workloads_table"]

_COLORS = {"pending": "yellow", "scheduled": "cyan", "starting": "cyan", "running": "green",
           "succeeded": "bright_black", "failed": "red", "preempted": "magenta",
           "cancelled": "bright_black"}


def state_text(w: M.Workload) -> Text:
    label = w.state + (f" (stopping: {w.stopping})" if w.stopping else "")
    return Text(label, style=_COLORS.get(w.state, ""))


def ago(t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def workloads_table(items: Iterable[M.Workload], title: str = "workloads") -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("ID", "QUEUE", "USER", "STATE", "ATTEMPT", "SUBMITTED", "REASON"):
        t.add_column(col, overflow="fold")
    for w in items:
        reason = "" if w.state in ("running", "succeeded") else w.reason_code
        t.add_row(w.id, w.queue, w.user, state_text(w), str(w.attempt), ago(w.submitted_at),
                  reason)
    return t


def _bar(used: float, total: float) -> ProgressBar:
    return ProgressBar(total=max(total, 1e-9), completed=min(used, total), width=20)


def nodes_table(nodes: Iterable[M.NodeInfo]) -> Table:
    t = Table(title="nodes", title_justify="left")
    for col in ("NODE", "MODEL", "GPUS USED", "", "STATUS", "PROVIDER", "$/GPU-H"):
        t.add_column(col)
    for n in nodes:
        status = "cordoned" if n.cordoned else n.health
        t.add_row(n.id, n.gpu_model, f"{n.gpus_used:g}/{n.gpu_count}",
                  _bar(n.gpus_used, n.gpu_count), status, n.provider,
                  f"{n.price_per_gpu_hour:.2f}")
    return t


def _price_range(p: M.ProviderInfo) -> str:
    lo, hi = p.price_per_gpu_hour_min, p.price_per_gpu_hour_max
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def providers_table(providers: Iterable[M.ProviderInfo]) -> Table:
    t = Table(title="providers", title_justify="left")
    for col in ("PROVIDER", "KIND", "REGIONS", "GPUS BY MODEL", "NODES", "ALLOCATED", "",
                "IDLE", "UNAVAILABLE", "$/GPU-H"):
        t.add_column(col, overflow="fold")
    for p in providers:
        models = ", ".join(f"{m} x{c}" for m, c in p.gpu_models.items()) or "-"
        nodes = str(p.nodes) + (f" ({p.nodes_unavailable} out)" if p.nodes_unavailable else "")
        t.add_row(p.name, ", ".join(p.capacity_kinds), ", ".join(p.regions), models, nodes,
                  f"{p.gpus_allocated:g}/{p.gpus_total}", _bar(p.gpus_allocated, p.gpus_total),
                  f"{p.gpus_idle:g}", f"{p.gpus_unavailable:g}", _price_range(p))
    return t


def queues_table(queues: Iterable[M.QueueInfo]) -> Table:
    t = Table(title="queues", title_justify="left")
    for col in ("QUEUE", "PARENT", "USED", "QUOTA", "", "LIMIT", "WEIGHT", "RUNNING", "PENDING"):
        t.add_column(col)
    for q in queues:
        limit = "-" if q.limit_gpus is None else f"{q.limit_gpus:g}"
        t.add_row(q.name, q.parent or "", f"{q.used_gpus:g}", f"{q.quota_gpus:g}",
                  _bar(q.used_gpus, q.quota_gpus or q.used_gpus or 1), limit, f"{q.weight:g}",
                  str(q.running), str(q.pending))
    return t
