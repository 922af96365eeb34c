"""Load a trace from files, whatever their format: the header says which one it is.

- Alibaba openb: node list with `sn, gpu, model`; pod list with `name, num_gpu, gpu_milli`.
- corral generic (see `corral.sim.generic`): nodes with `id, gpus`; tasks with `id, submit_time`.

The two files need not be in the same format (openb nodes with generic tasks work).
"""

from __future__ import annotations

from pathlib import Path

from corral.core.model import Node
from corral.sim import alibaba, generic
from corral.sim.columns import read_rows
from corral.sim.trace import Trace, TraceFormatError, TraceTask


def load_nodes(path: str | Path) -> tuple[Node, ...]:
    rows = read_rows(path)
    if alibaba.is_node_list(rows):
        return alibaba.load_nodes(path)
    if generic.is_node_list(rows):
        return generic.load_nodes(path)
    raise TraceFormatError(
        f"{Path(path).name}: not a node list; expected the columns of an openb node list "
        f"({', '.join(alibaba.NODE_COLUMNS)}) or of corral's generic format "
        f"({', '.join(generic.NODE_COLUMNS)}); found {', '.join(rows.header) or 'none'}"
    )


def load_tasks(path: str | Path) -> tuple[tuple[TraceTask, ...], tuple[str, ...]]:
    rows = read_rows(path)
    if alibaba.is_pod_list(rows):
        return alibaba.load_pods(path)
    if generic.is_task_list(rows):
        return generic.load_tasks(path), ()
    raise TraceFormatError(
        f"{Path(path).name}: not a task list; expected the columns of an openb pod list "
        f"({', '.join(alibaba.POD_COLUMNS)}) or of corral's generic format "
        f"({', '.join(generic.TASK_COLUMNS)}); found {', '.join(rows.header) or 'none'}"
    )


def load_trace(nodes_path: str | Path, tasks_path: str | Path) -> Trace:
    nodes = load_nodes(nodes_path)
    tasks, notes = load_tasks(tasks_path)
    if not nodes:
        raise TraceFormatError(f"{Path(nodes_path).name}: no nodes (the file has only a header)")
    name = Path(tasks_path).stem.removeprefix("openb_pod_list_")
    return Trace(name, nodes, tasks, notes)
