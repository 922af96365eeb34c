"""corral's generic trace format: two CSV files (or Parquet, with pyarrow) anyone can write.

**nodes** (one row per machine)

| column | required | meaning |
|---|---|---|
| id | yes | unique node name |
| gpus | yes | GPUs on the node (0 for CPU-only) |
| cpu_milli | yes | CPU in milli-cores |
| memory_mib | yes | RAM in MiB |
| gpu_model | no | GPU model (default `gpu`) |
| gpu_memory_mib | no | memory per GPU (default 16384) |
| price_per_gpu_hour | no | price per GPU-hour (default 0) |
| capacity_kind | no | on-demand, spot or owned (default on-demand) |
| region, zone, rack, nvlink_domain | no | topology (default: one region, one zone) |

**tasks** (one row per job, service replica set or pod)

| column | required | meaning |
|---|---|---|
| id | yes | unique task name |
| submit_time | yes | seconds from the trace start |
| gpus | yes | GPUs per worker (0 for CPU-only) |
| cpu_milli, memory_mib | yes | per worker |
| gpu_milli | no | with gpus = 1: the share of one GPU, 1-1000 (default 1000) |
| duration | no | seconds it runs once started (empty: unknown, fill experiment only) |
| workers | no | gang size (default 1): all start together or none |
| gpu_models | no | allowed models, `|`-separated |
| queue, priority, qos | no | its team, priority (integer) and QoS class |

Elastic jobs (a world of min to max workers that grows and shrinks, every worker restarting at
each resize: `corral.control.elastic`) are not modelled by the simulator: a task list with a
column that would describe one (`ELASTIC_COLUMNS`) is refused, never replayed as a plain gang
of `workers`. `corral plan` models an elastic job for one cycle.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from corral.core.model import MILLI_PER_GPU, CapacityKind, Node
from corral.sim.columns import Row, Rows, read_rows
from corral.sim.trace import Trace, TraceFormatError, TraceTask

NODE_COLUMNS = ("id", "gpus", "cpu_milli", "memory_mib")
TASK_COLUMNS = ("id", "submit_time", "gpus", "cpu_milli", "memory_mib")
#: columns that would make a task elastic (the spec's `elastic:` fields); refused
ELASTIC_COLUMNS = ("elastic", "min_workers", "max_workers", "resize_interval")
_KINDS = {k.value: k for k in CapacityKind}


def is_node_list(rows: Rows) -> bool:
    return rows.has("id") and rows.has("gpus") and not rows.has("submit_time")


def is_task_list(rows: Rows) -> bool:
    return rows.has("id") and rows.has("submit_time")


def load_nodes(path: str | Path) -> tuple[Node, ...]:
    rows = read_rows(path)
    rows.require(NODE_COLUMNS, "a generic node list")
    nodes = tuple(_node(row) for row in rows)
    _unique([n.id for n in nodes], rows)
    return nodes


def _node(row: Row) -> Node:
    gpus = row.integer("gpus", 0, 64)
    kind = row.text("capacity_kind", "on-demand").lower()
    if kind not in _KINDS:
        raise row.error("capacity_kind", kind, f"one of {', '.join(_KINDS)}")
    return Node(
        id=row.text("id") or f"line-{row.line}",
        provider=row.text("provider", "trace") or "trace",
        gpu_model=row.text("gpu_model") or "gpu",
        gpu_count=gpus,
        gpu_memory_mib=row.integer("gpu_memory_mib", 1, default=16384) if gpus else 0,
        cpu_milli=row.integer("cpu_milli", 1),
        memory_mib=row.integer("memory_mib", 1),
        price_per_gpu_hour=row.number("price_per_gpu_hour", optional=True) or 0.0,
        capacity_kind=_KINDS[kind],
        region=row.text("region") or "default",
        zone=row.text("zone") or "default",
        rack=row.text("rack"),
        nvlink_domain=row.text("nvlink_domain"),
    )


def load_tasks(path: str | Path) -> tuple[TraceTask, ...]:
    rows = read_rows(path)
    rows.require(TASK_COLUMNS, "a generic task list")
    _not_elastic(rows)
    tasks = tuple(_task(row) for row in rows)
    _unique([t.name for t in tasks], rows)
    return tasks


def _not_elastic(rows: Rows) -> None:
    found = [c for c in ELASTIC_COLUMNS if rows.has(c)]
    if found:
        raise TraceFormatError(
            f"{rows.path.name}: column(s) {', '.join(map(repr, found))} describe elastic jobs, "
            "which the simulator does not model (a world that grows and shrinks, restarting "
            "every worker at each resize); it will not replay them as plain gangs. Drop the "
            "column(s) and give workers the gang size to replay, or see one cycle of an "
            "elastic job with `corral plan`")


def _task(row: Row) -> TraceTask:
    gpus = row.integer("gpus", 0, 64)
    milli = row.integer("gpu_milli", 1, MILLI_PER_GPU, default=MILLI_PER_GPU) if gpus else 0
    if gpus > 1 and milli != MILLI_PER_GPU:
        raise row.error("gpu_milli", row.text("gpu_milli"),
                        "1000 (or empty) when gpus > 1: only a single GPU can be shared")
    return TraceTask(
        name=row.text("id") or f"line-{row.line}",
        cpu_milli=row.integer("cpu_milli", 0),
        memory_mib=row.integer("memory_mib", 0),
        gpus=gpus,
        gpu_milli=milli,
        gpu_models=tuple(m for m in row.text("gpu_models").split("|") if m),
        qos=row.text("qos"),
        workers=row.integer("workers", 1, 100_000, default=1),
        submitted=row.number("submit_time") or 0.0,
        duration=row.number("duration", optional=True),
        queue=row.text("queue"),
        priority=row.integer("priority", -1_000_000, 1_000_000, default=0),
    )


def _unique(ids: Sequence[str], rows: Rows) -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise TraceFormatError(f"{rows.path.name} line {i + 2}: column 'id' repeats {value!r}; "
                                   "every row needs its own")
        seen.add(value)


def load(nodes_path: str | Path, tasks_path: str | Path) -> Trace:
    return Trace(Path(tasks_path).stem, load_nodes(nodes_path), load_tasks(tasks_path))


def write(trace: Trace, nodes_path: str | Path, tasks_path: str | Path) -> None:
    """Write `trace` in the generic format (the synthetic generator's export)."""
    with Path(nodes_path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "gpus", "cpu_milli", "memory_mib", "gpu_model", "gpu_memory_mib",
                    "price_per_gpu_hour", "capacity_kind", "region", "zone", "rack"])
        for n in trace.nodes:
            w.writerow([n.id, n.gpu_count, n.cpu_milli, n.memory_mib, n.gpu_model,
                        n.gpu_memory_mib, n.price_per_gpu_hour, n.capacity_kind.value, n.region,
                        n.zone, n.rack])
    with Path(tasks_path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "submit_time", "gpus", "gpu_milli", "cpu_milli", "memory_mib",
                    "duration", "workers", "gpu_models", "queue", "priority", "qos"])
        for t in trace.tasks:
            w.writerow([t.name, t.submitted, t.gpus, t.gpu_milli if t.gpus else "", t.cpu_milli,
                        t.memory_mib, "" if t.duration is None else t.duration, t.workers,
                        "|".join(t.gpu_models), t.queue, t.priority, t.qos])
