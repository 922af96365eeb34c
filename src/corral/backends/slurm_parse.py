"""Reading Slurm's command output: nodes, node states, jobs. Pure (text in, values out).

Formats used (stable across Slurm 20-24):

- ``scontrol show nodes -o``: one node per line, ``Key=Value`` pairs (NodeName, CPUTot,
  RealMemory, Gres=gpu[:type]:N[(S:..)],shard:M, State=IDLE+DRAIN, Partitions...);
- ``sinfo -h -N -o %N|%T``: node|state in lower case, ``*`` appended when not responding;
- ``squeue -h -o %i|%T|%N|%r``: job|STATE|nodes|reason.

Node states (``scontrol``'s State is BASE+FLAG+FLAG, ``sinfo`` lower-case with suffixes):
DOWN, FAIL, FAILING, NOT_RESPONDING, POWERED_DOWN/POWER_DOWN, INVAL make a node *lost* for
running work and unhealthy for new work; DRAIN/DRAINING/DRAINED (an operator's or Slurm's own
drain) make it cordoned; everything else is healthy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from corral.backends.accelerators import VENDORS
from corral.core.model import LABEL_VENDOR, CapacityKind, Health, Node

__all__ = [
    "ENDED_JOB_STATES",
    "JOB_LOST_STATES",
    "SlurmJob",
    "SlurmNode",
    "gres_request",
    "node_is_lost",
    "parse_gres",
    "parse_nodes",
    "parse_sinfo",
    "parse_squeue",
    "slurm_inventory",
]

LOST_NODE_WORDS: Final = ("DOWN", "FAIL", "NOT_RESPONDING", "POWER", "INVAL", "NO_RESPOND")
DRAIN_WORDS: Final = ("DRAIN",)
#: job states after which nothing of the job runs
ENDED_JOB_STATES: Final = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED",
})
#: job states that mean the machine, not the program, failed
JOB_LOST_STATES: Final = frozenset({"NODE_FAIL", "BOOT_FAIL"})
#: the GRES names accelerators go by (`corral.backends.accelerators.VENDORS`' slurm_gres)
DEVICE_GRES: Final = frozenset(i.slurm_gres for i in VENDORS.values())
_GRES_ITEM = re.compile(r"^(?P<name>[a-z_]+)(?::(?P<type>[^:(]+))?:(?P<count>\d+)")


@dataclass(frozen=True, slots=True)
class SlurmNode:
    name: str
    state: str  # scontrol's State, upper case: "IDLE", "MIXED+DRAIN", "DOWN+NOT_RESPONDING"
    gpus: int
    gpu_type: str  # "" when Gres names no type
    shards: int
    cpus: int
    memory_mib: int
    partitions: tuple[str, ...]
    address: str = ""  # NodeAddr: where its slurmd (and a rendezvous on it) is reached
    #: the GRES its accelerators are under: gpu (NVIDIA, AMD), gaudi, neuron or tpu (issue 17)
    gres_name: str = "gpu"

    @property
    def shards_per_gpu(self) -> int:
        return self.shards // self.gpus if self.gpus else 0


def parse_gres(gres: str) -> tuple[int, str, int]:
    """``gpu:h100:4(S:0-1),shard:8`` -> (gpus 4, type "h100", shards 8). ``(null)`` -> zeros."""
    gpus, gpu_type, shards = 0, "", 0
    for item in _split_gres(gres):
        m = _GRES_ITEM.match(item)
        if not m:
            continue
        if m["name"] in DEVICE_GRES:
            gpus += int(m["count"])
            gpu_type = gpu_type or (m["type"] or "")
        elif m["name"] == "shard":
            shards += int(m["count"])
    return gpus, gpu_type, shards


def gres_name_of(gres: str) -> str:
    """The GRES name a node's accelerators are under (``gaudi:8`` -> gaudi); gpu by default."""
    for item in _split_gres(gres):
        m = _GRES_ITEM.match(item)
        if m and m["name"] in DEVICE_GRES:
            return m["name"]
    return "gpu"


def _split_gres(gres: str) -> list[str]:
    """Split on commas outside parentheses (``gpu:4(S:0-1,3)`` holds one)."""
    items, depth, current = [], 0, ""
    for ch in gres:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [i.strip() for i in items if i.strip() and i.strip() != "(null)"]


def _pairs(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in line.split():
        if "=" in token:
            k, v = token.split("=", 1)
            out[k] = v
    return out


def parse_nodes(text: str) -> list[SlurmNode]:
    """``scontrol show nodes -o`` output -> nodes (lines without NodeName are skipped)."""
    nodes = []
    for line in text.splitlines():
        f = _pairs(line)
        if "NodeName" not in f:
            continue
        gpus, gpu_type, shards = parse_gres(f.get("Gres", ""))
        partitions = tuple(p for p in f.get("Partitions", "").split(",") if p)
        nodes.append(SlurmNode(
            name=f["NodeName"], state=f.get("State", "UNKNOWN").upper(), gpus=gpus,
            gpu_type=gpu_type, shards=shards, cpus=_int(f.get("CPUTot", "0")),
            memory_mib=_int(f.get("RealMemory", "0")), partitions=partitions,
            address=f.get("NodeAddr", f["NodeName"]),
            gres_name=gres_name_of(f.get("Gres", ""))))
    return nodes


def _vendor_label(gres_name: str) -> tuple[tuple[str, str], ...]:
    """A node whose accelerators are not under gres/gpu: its vendor, which its name says."""
    vendor = next((i.vendor for i in VENDORS.values()
                   if i.slurm_gres == gres_name and gres_name != "gpu"), None)
    return () if vendor is None else ((LABEL_VENDOR, str(vendor)),)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def node_is_lost(state: str, *, not_responding_is_lost: bool = False) -> bool:
    """Whether work on a node in this state is gone. `state`: scontrol's (``DOWN+DRAIN``) or
    sinfo's (``down*``). Not responding alone counts only when asked: Slurm itself declares the
    node DOWN after SlurmdTimeout, which is what an operator tuned."""
    upper = state.upper()
    if upper.endswith("*") or "NOT_RESPONDING" in upper:
        if not_responding_is_lost:
            return True
        upper = upper.rstrip("*").replace("NOT_RESPONDING", "")
    return any(w in upper for w in LOST_NODE_WORDS)


def parse_sinfo(text: str) -> dict[str, str]:
    """``sinfo -h -N -o %N|%T`` -> node -> state (a node in two partitions appears twice)."""
    out: dict[str, str] = {}
    for line in text.split():
        if "|" in line:
            name, state = line.split("|", 1)
            out[name] = state
    return out


@dataclass(frozen=True, slots=True)
class SlurmJob:
    job_id: str
    state: str  # upper case: RUNNING, COMPLETED, NODE_FAIL...
    nodes: str
    reason: str


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """``squeue -h -o %i|%T|%N|%r`` (or sacct's JobID|State|NodeList|...) -> job id -> job.
    sacct adds step lines (``12.batch``): skipped; "CANCELLED by 0" is cut to CANCELLED."""
    jobs: dict[str, SlurmJob] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or "." in parts[0]:
            continue
        state = parts[1].split()[0].upper() if parts[1].strip() else "UNKNOWN"
        jobs[parts[0]] = SlurmJob(parts[0], state, parts[2] if len(parts) > 2 else "",
                                  parts[3] if len(parts) > 3 else "")
    return jobs


def gres_request(devices: int, milli: int, shards_per_gpu: int,
                 name: str = "gpu") -> tuple[str, str]:
    """The ``--gres`` value for a worker's share, and a note when Slurm's unit is coarser.

    Whole GPUs: ``gpu:<n>``. A share of one GPU: ``shard:<k>`` with k = ceil(milli x shards per
    GPU / 1000), the smallest number of shards that covers it; without shards on the node, one
    whole GPU. `name`: the node's GRES name (`SlurmNode.gres_name`): ``gaudi:<n>``,
    ``neuron:<n>``, ``tpu:<n>`` for the accelerators that are not GPUs (whole devices). Example: 250 milli on a node with 2 shards per GPU -> ``shard:1`` (half a GPU to
    Slurm), note "Slurm's shards are 500 milli: asked 1 shard for 250".
    """
    if milli >= 1000 or devices == 0 or name != "gpu":  # shards share GPUs only
        return (f"{name}:{devices}" if devices else ""), ""
    if shards_per_gpu <= 0:
        return "gpu:1", f"the node has no gres/shard: asked Slurm for a whole GPU for {milli} milli"
    k = math.ceil(milli * shards_per_gpu / 1000)
    size = 1000 // shards_per_gpu
    note = "" if k * size == milli else (
        f"Slurm's shards are {size} milli: asked {k} shard(s) for {milli}")
    return f"shard:{k}", note


def slurm_inventory(
    nodes: list[SlurmNode], *, provider: str = "slurm", gpu_model: str = "unknown",
    gpu_memory_mib: Mapping[str, int] | None = None, partition: str | None = None,
    not_responding_is_lost: bool = False,
) -> list[Node]:
    """Slurm nodes as corral nodes (only those in `partition`, when given)."""
    memory = {k.lower(): v for k, v in (gpu_memory_mib or {}).items()}
    out = []
    for n in nodes:
        if partition and partition not in n.partitions:
            continue
        model = n.gpu_type or gpu_model
        lost = node_is_lost(n.state, not_responding_is_lost=not_responding_is_lost)
        out.append(Node(
            id=n.name, provider=provider, gpu_model=model if n.gpus else "none",
            gpu_count=n.gpus, gpu_memory_mib=memory.get(model.lower(), 0),
            cpu_milli=n.cpus * 1000, memory_mib=n.memory_mib, capacity_kind=CapacityKind.OWNED,
            cordoned=any(w in n.state for w in DRAIN_WORDS),
            health=Health.UNHEALTHY if lost else Health.HEALTHY,
            labels=(("slurm.state", n.state), ("slurm.shards-per-gpu", str(n.shards_per_gpu)),
                    *_vendor_label(n.gres_name)),
        ))
    return out
