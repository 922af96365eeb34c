"""Loader for the Alibaba GPU cluster trace 2023 ("openb", cluster-trace-gpu-v2023).

The trace of Weng et al., "Beware of Fragmentation" (USENIX ATC 2023); license CC BY 4.0.

- node list: `sn, cpu_milli, memory_mib, gpu, model`
- pod list: `name, cpu_milli, memory_mib, num_gpu, gpu_milli` and, in all but `multigpu50`,
  `gpu_spec` (allowed models, `|`-separated), `qos`, `pod_phase`, `creation_time`,
  `deletion_time`, `scheduled_time` (seconds from the trace start).

A pod with `num_gpu` = 1 and `gpu_milli` < 1000 shares one GPU; any other GPU pod takes
`num_gpu` whole GPUs on one node (its `gpu_milli` is then 1000 and is ignored).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from corral.core.model import MILLI_PER_GPU, Node
from corral.sim.columns import Row, Rows, read_rows
from corral.sim.trace import Trace, TraceFormatError, TraceTask, run_time

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
TIME_COLUMNS = ("creation_time", "deletion_time", "scheduled_time")

#: Device memory (MiB) by model, from the vendors' specifications. The trace gives shares in
#: milli only, so memory matters only for shares given as memory; G1-G3 are undisclosed
#: models and get the common 16 GiB.
GPU_MEMORY_MIB = {"T4": 16384, "P100": 16384, "V100M16": 16384, "V100M32": 32768, "A10": 24576}
UNKNOWN_GPU_MEMORY_MIB = 16384
PROVIDER = "alibaba-openb"


def is_node_list(rows: Rows) -> bool:
    """Looks like an openb node list (its `sn` column is distinctive); columns are checked on
    loading, so a near miss gets a message naming what is missing."""
    return rows.has("sn")


def is_pod_list(rows: Rows) -> bool:
    return rows.has("name") and (rows.has("num_gpu") or rows.has("gpu_milli"))


def load_nodes(path: str | Path) -> tuple[Node, ...]:
    rows = read_rows(path)
    rows.require(NODE_COLUMNS, "an openb node list")
    nodes = tuple(_node(row) for row in rows)
    _unique((n.id for n in nodes), rows, "sn")
    return nodes


def _node(row: Row) -> Node:
    model = row.text("model") or "none"
    gpus = row.integer("gpu", 0, 64)
    return Node(
        id=row.text("sn") or f"line-{row.line}",
        provider=PROVIDER,
        gpu_model=model,
        gpu_count=gpus,
        gpu_memory_mib=GPU_MEMORY_MIB.get(model, UNKNOWN_GPU_MEMORY_MIB) if gpus else 0,
        cpu_milli=row.integer("cpu_milli", 1),
        memory_mib=row.integer("memory_mib", 1),
    )


def load_pods(path: str | Path) -> tuple[tuple[TraceTask, ...], tuple[str, ...]]:
    """Tasks of a pod list, and notes on what was assumed (missing times)."""
    rows = read_rows(path)
    rows.require(POD_COLUMNS, "an openb pod list")
    timed = all(rows.has(c) for c in TIME_COLUMNS)
    end = _trace_end(rows) if timed else 0.0
    tasks = tuple(_pod(row, timed, end) for row in rows)
    _unique((t.name for t in tasks), rows, "name")
    notes: list[str] = []
    if timed:
        unscheduled = sum(1 for row in rows if row.text("scheduled_time") == "")
        undeleted = sum(1 for row in rows if row.text("deletion_time") == "")
        notes.append(
            f"{unscheduled} task(s) without scheduled_time run for deletion - creation; "
            f"{undeleted} without deletion_time run until the trace ends ({end:.0f} s)"
        )
    else:
        notes.append("no creation/scheduled/deletion times: usable for the fill experiment only")
    return tasks, tuple(notes)


def _pod(row: Row, timed: bool, end: float) -> TraceTask:
    gpus = row.integer("num_gpu", 0, 64)
    milli = row.integer("gpu_milli", 0, MILLI_PER_GPU)
    if gpus == 1 and milli == 0:
        raise row.error("gpu_milli", row.text("gpu_milli"), "1 to 1000 for a pod with num_gpu 1")
    spec = tuple(m for m in row.text("gpu_spec").split("|") if m)
    duration = None
    created = 0.0
    if timed:
        created = row.number("creation_time") or 0.0
        scheduled = row.number("scheduled_time", optional=True)
        deleted = row.number("deletion_time", optional=True)
        duration = run_time(created, scheduled, deleted, end)
    return TraceTask(
        name=row.text("name") or f"line-{row.line}",
        cpu_milli=row.integer("cpu_milli", 0),
        memory_mib=row.integer("memory_mib", 0),
        gpus=gpus,
        gpu_milli=milli if gpus == 1 else (MILLI_PER_GPU if gpus else 0),
        gpu_models=spec,
        qos=row.text("qos"),
        submitted=created,
        duration=duration,
    )


def _trace_end(rows: Rows) -> float:
    end = 0.0
    for row in rows:
        for column in TIME_COLUMNS:
            value = row.number(column, optional=True)
            if value is not None:
                end = max(end, value)
    return end


def _unique(ids: Iterable[str], rows: Rows, column: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise TraceFormatError(
                f"{rows.path.name} line {i + 2}: column {column!r} repeats {value!r}; "
                "every row needs its own"
            )
        seen.add(value)


def load(nodes_path: str | Path, pods_path: str | Path) -> Trace:
    nodes = load_nodes(nodes_path)
    tasks, notes = load_pods(pods_path)
    name = Path(pods_path).stem.removeprefix("openb_pod_list_")
    return Trace(name, nodes, tasks, notes)
