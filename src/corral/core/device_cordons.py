"""Per-GPU cordons: which devices of a node stay out, and the room they hold from new work.

One rule, shared by the live health monitor (`corral.control.device_cordons`, which reads the
devices from GPU checks and keeps them in a node label) and the simulator's GPU faults
(`corral.sim.device_faults`):

- a fault of one device takes only that device out; when every device of a node is out, the
  node is cordoned as a whole (`node_wide`): nothing of it is usable;
- a device comes back once it has been healthy for `recover_after_s` (`desired`: against a
  device that flaps between healthy and sick);
- while out, its free room is held by a stand-in nomination `gpu-cordon:<node>:<gpu>` that
  never arrives (`holds`), so the core places nothing there without knowing about cordons.
  Work still on the device keeps its share until it is drained.

Pure: no clock (`now` is passed in), no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Final

from corral.core.model import MILLI_PER_GPU, Node, Nomination, WorkerAssignment, Workload

__all__ = ["HOLD_PREFIX", "desired", "holds", "is_device_hold", "node_wide"]

HOLD_PREFIX: Final = "gpu-cordon:"


def is_device_hold(workload_id: str) -> bool:
    return workload_id.startswith(HOLD_PREFIX)


def node_wide(sick: Collection[int], gpu_count: int) -> bool:
    """Whether devices `sick` of a node with `gpu_count` GPUs cordon the node as a whole:
    when all of them are sick (or it has none), nothing of it is left to use.

    >>> node_wide({3}, 8), node_wide(set(range(8)), 8)
    (False, True)
    """
    return len(sick) >= gpu_count


def desired(current: Sequence[int], sick: Collection[int], healthy_since: Mapping[int, float],
            now: float, recover_after_s: float) -> tuple[int, ...]:
    """The devices to keep out: the sick ones, and those cordoned (`current`) that have not
    been healthy for `recover_after_s` yet (`healthy_since`: since when each was seen healthy).

    >>> desired((3,), set(), {3: 100.0}, 130.0, 60.0), desired((3,), set(), {3: 100.0}, 160.0, 60.0)
    ((3,), ())
    """
    keep = set(sick)
    for d in current:
        if d not in sick and now - healthy_since.get(d, now) < recover_after_s:
            keep.add(d)
    return tuple(sorted(keep))


def holds(bad: Mapping[str, tuple[Node, Sequence[int]]], running: Iterable[Workload]
          ) -> tuple[Nomination, ...]:
    """A stand-in nomination per cordoned device (`bad`: node id -> the node and its devices
    out), holding what is free of it now (work still on it keeps its share). `running`: the
    workloads with their assignments (pending ones may be in it: they hold nothing).

    Example: n1 (8 x 80 GiB) with device 3 out, a 0.25-GPU job on device 3 ->
    Nomination("gpu-cordon:n1:3", (WorkerAssignment(0, "n1", (3,), 750, 61440),)).
    """
    if not bad:
        return ()
    used: dict[tuple[str, int], tuple[int, int]] = {}
    # the one pass over all work, and only while some GPU is out: a tight loop (pending work
    # has no assignments, so it need not be filtered out first)
    for w in running:
        for a in w.assignments:
            if a.node_id in bad:
                for d in a.devices:
                    milli, mem = used.get((a.node_id, d), (0, 0))
                    used[(a.node_id, d)] = (milli + a.milli_per_device,
                                            mem + a.gpu_memory_mib_per_device)
    out = []
    for node_id in sorted(bad):
        node, devices = bad[node_id]
        for d in devices:
            milli, mem = used.get((node_id, d), (0, 0))
            if milli >= MILLI_PER_GPU:
                continue  # nothing free to hold
            out.append(Nomination(f"{HOLD_PREFIX}{node_id}:{d}", (WorkerAssignment(
                0, node_id, (d,), MILLI_PER_GPU - milli, max(0, node.gpu_memory_mib - mem)),)))
    return tuple(out)
