"""Cordon one GPU rather than its node: a problem on GPU 3 of 8 takes only GPU 3 out.

Why: an ECC fault, an XID or a failed known-answer test is a fault of one device; the node's
other GPUs still compute correctly. Cordoning the node would throw away 7/8 of it (Kubernetes'
device plugins do the same: a device reported Unhealthy leaves the node's allocatable, the node
stays Ready; NVIDIA's k8s-device-plugin does it for XIDs, AMD's for its health checks).

Where the per-device state lives and how it reaches the scheduler:

    GPU verdict (agent or local probe) ─> split (pure): device checks -> devices, others -> node
    health monitor (`corral.control.health`) ─> node label `corral.dev/cordoned-gpus: "3"`
                                               + DeviceCordoned event (the reason, for `nodes`)
    snapshot (`with_nominations`)  ─> `device_holds`: each cordoned device's free room held by
                                      a stand-in nominee `gpu-cordon:<node>:<gpu>` that never
                                      arrives, so the core places nothing there

The rule itself (which devices stay out, the room they hold, when a node goes out whole) is
`corral.core.device_cordons`, shared with the simulator's GPU faults. The core's scheduling is
untouched: a nomination already means "this room is taken for someone else"
(`corral.core.nominations`), and holding the room of a bad device is exactly that. The
stand-ins are never stored (`is_device_hold`; apply leaves them out of the nominations table).
The label is on the node row so that the live state's change feed carries it (a cordon moves
the node's change_seq and so makes the loop plan again); it is the monitor's alone to write, and
the monitor writes it again if a pool file reload drops it.

When every device of a node is bad, or a check concerns the node as a whole (devices missing,
the library unavailable), the node is cordoned as before: nothing of it is usable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from corral.backends.health import Check, NodeVerdict
from corral.core import reasons as R
from corral.core.device_cordons import HOLD_PREFIX, desired, holds, is_device_hold, node_wide
from corral.core.model import Health, Node, Nomination, Workload

__all__ = ["GPU_CORDONED", "HOLD_PREFIX", "LABEL", "cordoned_devices", "desired",
           "device_holds", "encode", "is_device_hold", "reworded", "split_verdict"]

LABEL: Final = "corral.dev/cordoned-gpus"
#: the pending reason of work that would fit on GPUs cordoned for their health (`reworded`)
GPU_CORDONED: Final = "GpuCordoned"
_RANK: Final = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def encode(devices: Iterable[int]) -> str:
    return ",".join(str(d) for d in sorted(set(devices)))


def cordoned_devices(node: Node) -> tuple[int, ...]:
    """The devices of `node` the health monitor took out (its label), in order."""
    raw = node.label(LABEL) or ""
    out = {int(x) for x in raw.split(",") if x.strip().isdigit()}
    return tuple(sorted(d for d in out if d < node.gpu_count))


def device_holds(nodes: Iterable[Node], running: Iterable[Workload]) -> tuple[Nomination, ...]:
    """A stand-in nomination per cordoned device (its node's label), holding what is free of
    it now (`corral.core.device_cordons.holds`, the simulator's rule too). Pure."""
    # a plain scan of the label pairs: this runs every cycle over every node (10,000)
    labelled = [n for n in nodes if n.labels for k, _ in n.labels if k == LABEL]
    return holds({n.id: (n, devices) for n in labelled if (devices := cordoned_devices(n))},
                 running)


def reworded(reason: R.Reason) -> R.Reason:
    """A pending reason as users should read it: the core says `RoomNominated` when the held
    room would fit the work, and for a cordoned GPU's stand-in that would name a nominee that
    does not exist. Pure. Example: "needs 1 GPU (...); the room that fits it is held for
    gpu-cordon:n1:2, ..." -> GpuCordoned "needs 1 GPU (...); it would fit on gpu 2 of n1,
    cordoned for its health (corral nodes says why)"."""
    if reason.code != R.ROOM_NOMINATED:
        return reason
    named = dict(reason.details).get("nominated_for")
    nominees = [n for n in named if isinstance(n, str)] if isinstance(named, tuple | list) else []
    if not nominees or not all(is_device_hold(n) for n in nominees):
        return reason
    gpus = ", ".join(f"gpu {n.rsplit(':', 1)[1]} of {n[len(HOLD_PREFIX):].rsplit(':', 1)[0]}"
                     for n in nominees)
    needs = reason.message.split("; the room", 1)[0]
    return R.Reason(GPU_CORDONED, f"{needs}; it would fit on {gpus}, cordoned for "
                    "its health (corral nodes says why)", reason.details)


def split_verdict(verdict: NodeVerdict, gpu_count: int
                  ) -> tuple[NodeVerdict, dict[int, tuple[Health, str]]]:
    """The part of `verdict` for the node, and each sick device's health and reason. Pure.

    Checks that name a device go to that device; the node keeps the others. When every device
    is sick (or the node has none), the verdict stays the node's whole (module docstring).
    Example: 8 GPUs, checks [ecc on gpu 3] -> (HEALTHY "7 of 8 GPUs healthy; gpu 3 cordoned",
    {3: (UNHEALTHY, "gpu 3: 2 uncorrected ECC errors ...")}).
    """
    on_device = [c for c in verdict.checks if c.device is not None and 0 <= c.device < gpu_count]
    if not on_device:
        return verdict, {}
    devices: dict[int, list[Check]] = {}
    for c in on_device:
        devices.setdefault(c.device or 0, []).append(c)
    if node_wide(devices, gpu_count):
        return verdict, {}
    sick = {d: (max((c.health for c in cs), key=_RANK.__getitem__),
                f"gpu {d}: {'; '.join(c.reason for c in cs)}") for d, cs in sorted(devices.items())}
    rest = tuple(c for c in verdict.checks if c not in on_device)
    listed = ", ".join(str(d) for d in sick)
    if not rest:
        return NodeVerdict(Health.HEALTHY, f"{gpu_count - len(sick)} of {gpu_count} GPUs "
                           f"healthy; gpu {listed} cordoned", verdict.checked), sick
    worst = max((c.health for c in rest), key=_RANK.__getitem__)
    return NodeVerdict(worst, "; ".join(c.reason for c in rest if c.health == worst),
                       verdict.checked, rest), sick
