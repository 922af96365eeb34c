"""Rich tables for workloads, nodes and queues."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic (issue 14)
    from rich.console import RenderableType

    from corral.sdk import models as M

__all__ = ["ago", "devices_table", "elastic_text", "nodes_table", "providers_table",
           "queues_table", "state_text", "use_text", "workloads_table"]

_COLORS = {"pending": "yellow", "scheduled": "cyan", "starting": "cyan", "running": "green",
           "succeeded": "bright_black", "failed": "red", "preempted": "magenta",
           "cancelled": "bright_black"}


def state_text(w: M.Workload) -> Text:
    label = w.state + (f" (stopping: {w.stopping})" if w.stopping else "")
    return Text(label, style=_COLORS.get(w.state, ""))


def elastic_text(e: M.ElasticWorld) -> str:
    """`corral describe`'s line for an elastic job: its current world and its bounds."""
    bounds = f"({e.min_workers} to {e.max_workers} allowed)"
    if e.world_size is None:  # no world recorded: the core gang has not started yet
        return f"no world yet {bounds}; starts at {e.min_workers} when they fit"
    return f"world of {e.world_size} workers {bounds}, generation {e.generation}"


def ago(t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def id_column(t: Table, header: str, ids: Iterable[str]) -> None:
    """An ID column that is never wrapped or cut: as wide as the longest ID; when the
    terminal is narrow, the other columns fold instead."""
    t.add_column(header, no_wrap=True, min_width=max((len(i) for i in ids), default=len(header)))


def workloads_table(items: Iterable[M.Workload], title: str = "workloads",
                    wide: bool = False) -> Table:
    items = list(items)
    t = Table(title=title, title_justify="left")
    id_column(t, "ID", (w.id for w in items))
    cols = ["QUEUE", "USER", "STATE", "ATTEMPT", "SUBMITTED", "REASON"]
    if wide:
        cols[0:0] = ["NAME", "KIND"]  # after ID, as in the row
        cols[-1:-1] = ["WORKERS", "GPUS", "PRIORITY", "NODES"]
        cols.append("MESSAGE")
    for col in cols:  # a header keeps its word whole: the column is never narrower
        t.add_column(col, overflow="fold", min_width=len(col))
    for w in items:
        reason = "" if w.state in ("running", "succeeded") else w.reason_code
        row: list[str | Text] = [w.id, w.queue, w.user, state_text(w), str(w.attempt),
                                 ago(w.submitted_at), reason]
        if wide:
            nodes = ",".join(sorted({p.node_id for p in w.placements})) or "-"
            row[1:1] = [w.name, w.kind]
            row[-1:-1] = [str(w.spec.get("workers", 1)), f"{w.spec.get('gpus', 0):g}",
                          str(w.spec.get("priority", 0)), nodes]
            row.append("" if w.state in ("running", "succeeded") else w.reason_message)
        t.add_row(*row)
    return t


def _bar(used: float, total: float, width: int = 20) -> ProgressBar:
    return ProgressBar(total=max(total, 1e-9), completed=min(used, total), width=width)


#: the node label listing GPUs cordoned one by one (`corral.control.device_cordons.LABEL`)
CORDONED_GPUS = "corral.dev/cordoned-gpus"


#: the server's default cut-offs (each device of /v1/nodes carries the server's own:
#: `stale_after_s`, `idle_below`, set by `corral up --gpu-use-stale / --gpu-idle-below`)
#: (the models are not imported here: `--help` loads no pydantic)
USE_STALE_S = 300.0
IDLE_HELD = 0.1
IDLE_HELD_WORDS = "held, barely used"


def fresh_devices(n: M.NodeInfo) -> list[M.DeviceUseInfo]:
    """The node's devices with a sample recent enough to say what they do now."""
    return [d for d in n.devices if d.age_s <= d.stale_after_s]


def idle_held(d: M.DeviceUseInfo) -> bool:
    """Held by work the caller may see (admins: all; members: their queues') and under the
    server's `idle_below` busy in a fresh sample (the server's `idle_held`, recomputed so an
    older server without the flag is read the same way)."""
    return (bool(d.workloads) and not d.before_hold and d.age_s <= d.stale_after_s
            and d.utilization < d.idle_below)


def use_text(n: M.NodeInfo) -> str:
    """The USE cell: the mean measured utilisation of the node's sampled GPUs ("-" when no
    recent sample), and how many held GPUs are barely used."""
    fresh = fresh_devices(n)
    if not fresh:
        return "-"
    text = f"{100 * sum(d.utilization for d in fresh) / len(fresh):.0f}%"
    idle = sum(idle_held(d) for d in fresh)
    return f"{text}, {idle} {IDLE_HELD_WORDS}" if idle else text


def nodes_table(nodes: Iterable[M.NodeInfo], wide: bool = False) -> Table:
    nodes = list(nodes)
    t = Table(title="nodes", title_justify="left")
    id_column(t, "NODE", (n.id for n in nodes))
    why = any(n.health_reason for n in nodes)
    for col in ("MODEL", "GPUS USED", ""):
        t.add_column(col)
    t.add_column("USE", overflow="fold")  # measured use beside allocation
    t.add_column("STATUS")
    for col in ("PROVIDER", "$/GPU-H"):  # one short word each: kept whole, the others fold
        t.add_column(col, no_wrap=True)
    if why:  # only when a node is cordoned by health: its failed checks
        t.add_column("WHY", overflow="fold")
    for n in nodes:
        status = "cordoned" if n.cordoned else n.health
        if n.labels.get(CORDONED_GPUS):  # the health monitor took these GPUs out, one by one
            status = f"{status}, gpu {n.labels[CORDONED_GPUS]} cordoned"
        row: list[RenderableType] = [
            # a shorter bar than the other tables': USE beside it still fits 80 columns
            n.id, n.gpu_model, f"{n.gpus_used:g}/{n.gpu_count}",
            _bar(n.gpus_used, n.gpu_count, width=10),
            Text(use_text(n), style="yellow" if any(map(idle_held, n.devices)) else ""),
            status, n.provider, f"{n.price_per_gpu_hour:.2f}"]
        t.add_row(*row, *([n.health_reason] if why else []))
    return t


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f}"


def devices_table(nodes: Iterable[M.NodeInfo]) -> Table:
    """`corral nodes -o wide`'s second table: each sampled GPU's measured use, its memory, the
    sample's age and what holds it (admins see the holders)."""
    t = Table(title="gpus (measured)", title_justify="left")
    rows = [(n.id, d) for n in nodes for d in sorted(n.devices, key=lambda d: d.device)]
    id_column(t, "NODE", (node for node, _ in rows))
    for col in ("GPU", "USE", "MEMORY GIB", "SAMPLED"):
        t.add_column(col, overflow="fold", min_width=len(col))
    id_column(t, "HELD BY", (", ".join(d.workloads) or "-" for _, d in rows))  # IDs whole
    for node, d in rows:
        stale = d.age_s > d.stale_after_s
        use = f"{100 * d.utilization:.0f}%" + (", stale" if stale else "")
        if d.before_hold:  # taken before the hold began: says nothing of the holder's use
            use += ", no sample since this hold began"
        if idle_held(d):
            use += f", {IDLE_HELD_WORDS}"
        t.add_row(node, str(d.device), Text(use, style="yellow" if idle_held(d) else ""),
                  f"{_gib(d.memory_used_bytes)}/{_gib(d.memory_total_bytes)}",
                  f"{d.age_s:.0f}s ago", ", ".join(d.workloads) or "-")
    return t


def _price_range(p: M.ProviderInfo) -> str:
    lo, hi = p.price_per_gpu_hour_min, p.price_per_gpu_hour_max
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def providers_table(providers: Iterable[M.ProviderInfo]) -> Table:
    providers = list(providers)
    t = Table(title="providers", title_justify="left")
    id_column(t, "PROVIDER", (p.name for p in providers))
    for col in ("KIND", "REGIONS", "GPUS BY MODEL", "NODES", "ALLOCATED", "",
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
    queues = list(queues)
    t = Table(title="queues", title_justify="left")
    id_column(t, "QUEUE", (q.name for q in queues))
    for col in ("PARENT", "USED", "QUOTA", "", "LIMIT", "WEIGHT", "RUNNING", "PENDING"):
        t.add_column(col)
    for q in queues:
        limit = "-" if q.limit_gpus is None else f"{q.limit_gpus:g}"
        t.add_row(q.name, q.parent or "", f"{q.used_gpus:g}", f"{q.quota_gpus:g}",
                  _bar(q.used_gpus, q.quota_gpus or q.used_gpus or 1), limit, f"{q.weight:g}",
                  str(q.running), str(q.pending))
    return t
