"""Which of a workload's node constraints no node of the pool meets, named by its spec field.

The core's diagnosis of a workload that can never run speaks of sizes, models and prices; a
workload kept off every node by its capacity kinds, its node selector or its least GPU memory
must hear which of those it was, with what the pool does offer, so the error names the field to
change. The core's `never_fits` asks it when no node passes a shape's static filters, and the
control plane at submission on the whole pool (cordons and health ignored: they pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from corral.core import reasons as R
from corral.core.model import (
    LABEL_CONTAINER_RUNTIME,
    LABEL_RUNS_IMAGES,
    NO_CONTAINER_RUNTIME,
    Node,
    Workload,
)

__all__ = ["CAPACITY_UNAVAILABLE", "FIELD_OF_CONSTRAINT", "GPU_MEMORY_TOO_SMALL",
           "NO_NODE_SELECTED", "unmet_constraint"]

CAPACITY_UNAVAILABLE = R.CAPACITY_UNAVAILABLE
NO_NODE_SELECTED = R.NO_NODE_SELECTED
GPU_MEMORY_TOO_SMALL = R.GPU_MEMORY_TOO_SMALL
CONSTRAINTS_DISJOINT = R.CONSTRAINTS_DISJOINT

FIELD_OF_CONSTRAINT: Final = {
    CAPACITY_UNAVAILABLE: "capacity",
    NO_NODE_SELECTED: "node_selector",
    GPU_MEMORY_TOO_SMALL: "min_gpu_memory",
    CONSTRAINTS_DISJOINT: "spec",
}


def unmet_constraint(w: Workload, nodes: Sequence[Node]) -> R.Reason | None:
    """The first of `w`'s capacity kinds, node selector and least GPU memory that no node of
    `nodes` meets, or, when each alone is met, their combination with its GPU models (each
    field that excludes some node is named), or None."""
    met: list[tuple[str, set[str]]] = []
    for field, check in (("capacity", _kinds), ("image", _images),
                         ("node_selector", _selected), ("min_gpu_memory", _memory)):
        found = check(w, nodes)
        if isinstance(found, R.Reason):
            return found
        met.append((field, found))
    r = w.resources
    if w.gpu_models and (r.gpus or r.fractional):
        offering = {n.id for n in nodes if n.gpu_model in w.gpu_models}
        if not offering:
            return None  # the core's diagnosis names the missing model (GpuModelUnavailable)
        met.append(("gpu_models", offering))
    if not nodes or set.intersection(*(ids for _, ids in met)):
        return None
    every = {n.id for n in nodes}
    named = [f for f, ids in met if ids != every]
    default = "" if w.capacity_kinds or "capacity" not in named else (
        f" (capacity by default: {', '.join(w.allowed_capacity)}, as work that may not be "
        "preempted stays off spot; list spot in capacity to allow it)")
    return R.Reason(CONSTRAINTS_DISJOINT,
                    f"no node meets its {_and(named)} together{default}, though each alone is "
                    "met by some node; loosen one of them")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _kinds(w: Workload, nodes: Sequence[Node]) -> set[str] | R.Reason:
    allowed = set(w.allowed_capacity)
    ok = {n.id for n in nodes if n.capacity_kind in allowed}
    if ok or not nodes:
        return ok
    offered = ", ".join(sorted({str(n.capacity_kind) for n in nodes}))
    wants = ", ".join(str(k) for k in w.allowed_capacity)
    why = "" if w.capacity_kinds else (
        " (work that may not be preempted stays off spot unless it lists spot in capacity)")
    fix = (f"add {offered} to capacity" if w.capacity_kinds else
           f"set capacity: [{offered}] to run there anyway")
    return R.Reason(CAPACITY_UNAVAILABLE,
                    f"may run on {wants} capacity{why}; this pool has only {offered}: {fix}")


def _images(w: Workload, nodes: Sequence[Node]) -> set[str] | R.Reason:
    """An image (`WorkloadSpec.to_core` selects LABEL_RUNS_IMAGES) needs a node that runs
    containers: told in the words of `image`, not of a selector the user never wrote."""
    ok = {n.id for n in nodes}
    if (LABEL_RUNS_IMAGES, "true") not in w.node_selector:
        return ok
    ok = {n.id for n in nodes if n.label(LABEL_RUNS_IMAGES) == "true"}
    if ok or not nodes:
        return ok
    without = sum(n.label(LABEL_CONTAINER_RUNTIME) == NO_CONTAINER_RUNTIME for n in nodes)
    return R.Reason(NO_NODE_SELECTED,
                    f"no node can run images: none has podman ({without} of {len(nodes)} "
                    f"report {LABEL_CONTAINER_RUNTIME}={NO_CONTAINER_RUNTIME}); start an agent "
                    "on a host where podman runs (scripts/install-system-deps installs it), or "
                    "remove image", details=(("field", "image"),))


def _selected(w: Workload, nodes: Sequence[Node]) -> set[str] | R.Reason:
    ok = {n.id for n in nodes}
    if not w.node_selector:
        return ok
    for key, value in w.node_selector:
        if (key, value) == (LABEL_RUNS_IMAGES, "true"):
            continue  # image's own (`_images`)
        carrying = {n.id for n in nodes if n.label(key) == value}
        if not carrying:
            values = sorted({v for n in nodes if (v := n.label(key)) is not None})
            offered = (f"values of {key} in the pool: {', '.join(values[:10])}"
                       f"{', ...' if len(values) > 10 else ''}" if values
                       else f"no node carries {key} at all")
            return R.Reason(NO_NODE_SELECTED,
                            f"no node carries the label {key}={value} ({offered}); change or "
                            "remove it in node_selector")
        ok &= carrying
    if ok:
        return ok
    pairs = ", ".join(f"{k}={v}" for k, v in w.node_selector
                      if (k, v) != (LABEL_RUNS_IMAGES, "true"))
    return R.Reason(NO_NODE_SELECTED, f"no node carries all of {pairs}, though each is carried "
                                      "by some node; remove one from node_selector")


def _memory(w: Workload, nodes: Sequence[Node]) -> set[str] | R.Reason:
    least = w.min_gpu_memory_mib if w.resources.gpus else 0
    ok = {n.id for n in nodes if n.gpu_memory_mib >= least}
    if ok or not least or not nodes:
        return ok
    most = max(n.gpu_memory_mib for n in nodes)
    return R.Reason(GPU_MEMORY_TOO_SMALL,
                    f"needs GPUs of at least {_gib(least)}; the largest in the pool have "
                    f"{_gib(most)}: lower min_gpu_memory")


def _gib(mib: int) -> str:
    return f"{mib / 1024:g} GiB"
