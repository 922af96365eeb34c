"""The **contended** regime of `bench/schedule_cycle.py` (its default): about half the pool runs as
the cycle begins and every action has work to do: teams below their quota with pending work that
only the borrowers' running work can give back (reclaim), borrowers with urgent work behind their
own (preemption), a fragmented A10G partition (consolidation), a priority team waiting for three
whole A10G nodes (a reservation). The recipe is schedule_cycle.py's docstring. Imported by
schedule_cycle.py from this folder (a script's folder is first on its path)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from corral.core import (
    ClusterState,
    Node,
    Queue,
    WorkerAssignment,
    WorkerResources,
    Workload,
    WorkloadState,
)
from corral.core.model import CapacityKind, TopologyLevel

NOW = 1e6
GIB = 1024

#: (model, device memory MiB, [(capacity kind, price per GPU-hour, weight)])
NODE_TYPES = {
    "H100": (81_920, ((CapacityKind.OWNED, 0.9, 1), (CapacityKind.ON_DEMAND, 4.1, 1))),
    "A100": (81_920, ((CapacityKind.ON_DEMAND, 2.3, 1), (CapacityKind.SPOT, 1.0, 1))),
    "L40S": (49_152, ((CapacityKind.SPOT, 0.6, 7), (CapacityKind.ON_DEMAND, 1.4, 3))),
    "A10G": (24_576, ((CapacityKind.ON_DEMAND, 0.8, 1),)),
}
#: node types in every 20 consecutive nodes: 6 H100, 7 A100, 5 L40S, 2 A10G, interleaved so
#: every rack and zone has some of each
PATTERN = ("H100", "A100", "L40S", "H100", "A100", "L40S", "A100", "H100", "A10G", "L40S",
           "A100", "H100", "A100", "L40S", "H100", "A100", "L40S", "H100", "A10G", "A100")
PROVIDER_OF = {CapacityKind.OWNED: "onprem", CapacityKind.ON_DEMAND: "aws",
               CapacityKind.SPOT: "gcp"}
OWED, IDLE, BORROWER = "owed", "idle", "borrower"
#: quota weight of each kind of team (quotas sum to the pool) and the share of its quota it
#: runs as the cycle begins
QUOTA_UNITS = {OWED: 1.0, IDLE: 2.0, BORROWER: 0.7}
RUNS = {OWED: 0.3, BORROWER: 1.4}
ORGS = ((OWED, IDLE, BORROWER, BORROWER),) * 4 + ((BORROWER, BORROWER, BORROWER, OWED),) * 3 \
    + ((OWED, OWED, IDLE, IDLE),) * 3
BIG = WorkerResources(gpus=8, cpu_milli=64_000, memory_mib=512 * GIB)


@dataclass
class Team:
    name: str
    kind: str
    quota_milli: int
    priority: int = 0  # queue priority: goes first in allocation among queues of its tier
    runs_milli: int = 0  # what it runs as the cycle begins (filled by the layout)


def contended_pool(n: int, rng: random.Random) -> list[Node]:
    nodes = []
    for i in range(n):
        model = PATTERN[i % len(PATTERN)]
        memory, kinds = NODE_TYPES[model]
        kind, price, _ = rng.choices(kinds, weights=[k[2] for k in kinds])[0]
        provider = PROVIDER_OF[kind]
        region = f"{provider}-r{(i // 400) % 2}"
        nodes.append(Node(
            id=f"n{i:05d}", provider=provider, gpu_model=model, gpu_count=8,
            gpu_memory_mib=memory, cpu_milli=128_000, memory_mib=2048 * GIB,
            price_per_gpu_hour=price, capacity_kind=kind, region=region,
            zone=f"{region}-z{(i // 100) % 3}", rack=f"rack{i // 20}"))
    return nodes


def contended_queues(total_gpus: int) -> tuple[list[Queue], list[Team]]:
    units = sum(QUOTA_UNITS[k] for org in ORGS for k in org)
    queues: list[Queue] = []
    teams: list[Team] = []
    for o, org in enumerate(ORGS):
        children = []
        for t, kind in enumerate(org):
            quota = total_gpus * QUOTA_UNITS[kind] / units
            # the first owed team of an organisation without borrowers (which stays within
            # its quota) is a priority team
            priority = int(kind == OWED and BORROWER not in org
                           and not any(t.priority for t in teams))
            children.append(Queue(f"org{o}-t{t}", parent=f"org{o}", quota_gpus=quota,
                                  weight=1 + t % 3, priority=priority))
            teams.append(Team(f"org{o}-t{t}", kind, round(quota * 1000), priority))
        queues.append(Queue(f"org{o}", quota_gpus=sum(c.quota_gpus for c in children),
                            weight=1 + o % 3))
        queues.extend(children)
    return queues, teams


class Layout:
    """Running work laid out node by node (assignments written directly, as the control plane's
    snapshot would carry them)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.running: list[Workload] = []

    def job(self, team: Team, res: WorkerResources, parts: list[tuple[Node, tuple[int, ...]]],
            priority: int = 0, models: tuple[str, ...] = (), young: bool = False) -> None:
        rng = self.rng
        milli = res.gpu_milli or 1000
        assignments = tuple(
            WorkerAssignment(i, node.id, devices, milli,
                             node.gpu_memory_mib * milli // 1000)
            for i, (node, devices) in enumerate(parts))
        team.runs_milli += milli * sum(len(d) for _, d in parts)
        started = NOW - (rng.uniform(60, 7000) if young else rng.uniform(7200, 3 * 86400))
        self.running.append(Workload(
            id=f"r{len(self.running):06d}", queue=team.name, resources=res,
            workers=len(parts), priority=priority, gpu_models=models,
            min_gpu_memory_mib=40 * GIB if res.gpus and not models else 0,
            min_runtime_s=7200.0 if young else rng.choice((0.0, 0.0, 600.0)),
            submitted_at=started - rng.uniform(0, 3600), state=WorkloadState.RUNNING,
            started_at=started, assignments=assignments))

    def fill_node(self, team: Team, node: Node, nodes: Iterator[Node]) -> None:
        """Fill one whole node with `team`'s work (a gang may take more nodes from `nodes`)."""
        rng = self.rng
        roll = rng.random()
        priority = 10 if rng.random() < 0.3 else 0
        young = rng.random() < 0.25
        if roll < 0.4:
            self.job(team, BIG, [(node, tuple(range(8)))], priority, young=young)
        elif roll < 0.7:
            one = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=64 * GIB)
            for d in range(8):
                self.job(team, one, [(node, (d,))], 10 if rng.random() < 0.3 else 0,
                         young=rng.random() < 0.25)
        elif roll < 0.85:
            four = WorkerResources(gpus=4, cpu_milli=32_000, memory_mib=256 * GIB)
            self.job(team, four, [(node, (0, 1, 2, 3))], priority, young=young)
            self.job(team, four, [(node, (4, 5, 6, 7))], priority)
        else:
            gang = [node] + [n for _, n in zip(range(rng.randint(1, 3)), nodes, strict=False)]
            self.job(team, BIG, [(n, tuple(range(8))) for n in gang], priority, young=young)


def lay_out(pool: list[Node], teams: list[Team], rng: random.Random) -> list[Workload]:
    layout = Layout(rng)
    by_model: dict[str, list[Node]] = {m: [] for m in NODE_TYPES}
    for node in pool:
        by_model[node.gpu_model].append(node)
    borrowers = [t for t in teams if t.kind == BORROWER]
    owed = [t for t in teams if t.kind == OWED]
    idle = [t for t in teams if t.kind == IDLE]

    def neediest(group: list[Team]) -> Team:
        return max(group, key=lambda t: (RUNS[t.kind] * t.quota_milli - t.runs_milli, t.name))

    def short(group: list[Team]) -> bool:
        return any(t.runs_milli < RUNS[t.kind] * t.quota_milli for t in group)

    # H100: every node full of borrowers' work.
    h100 = iter(by_model["H100"])
    for node in h100:
        layout.fill_node(neediest(borrowers), node, h100)
    # A100: borrowers' rest, then the owed teams' use; the rest stays free.
    a100 = iter(by_model["A100"])
    for group in (borrowers, owed):
        while short(group) and (spare := next(a100, None)) is not None:
            layout.fill_node(neediest(group), spare, a100)
    # L40S: every fifth node half full of fractional work (inference teams).
    small = [*idle, *owed]
    for k, node in enumerate(by_model["L40S"][::5]):
        team = small[k % len(small)]
        share = WorkerResources(gpu_milli=rng.choice((250, 500)), cpu_milli=2000,
                                memory_mib=16 * GIB)
        for d in range(4):
            for _ in range(1000 // share.gpu_milli):
                layout.job(team, share, [(node, (d,))], models=("L40S",))
    # A10G: four 1-GPU jobs per node on alternate devices: 4 free GPUs, never 8 together.
    one = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=32 * GIB)
    for k, node in enumerate(by_model["A10G"]):
        team = idle[k % len(idle)]
        for d in (0, 2, 4, 6):
            layout.job(team, one, [(node, (d,))], models=("A10G",))
    return layout.running


def owed_workload(i: int, team: Team, rng: random.Random) -> Workload:
    """What an owed team waits for: H100s, which only the borrowers' running work can give."""
    roll = rng.random()
    workers = 1
    if roll < 0.4:
        res = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=64 * GIB)
    elif roll < 0.5:
        res = WorkerResources(gpus=4, cpu_milli=32_000, memory_mib=256 * GIB)
    elif roll < 0.8:
        res = BIG
    else:
        res, workers = BIG, rng.randint(2, 4)
    if team.priority:  # the priority team's H100 work: single GPUs (no reservation)
        res, workers = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=64 * GIB), 1
    return Workload(
        id=f"w{i:06d}", queue=team.name, resources=res, workers=workers,
        priority=rng.choice((0, 10, 50)), preemptible=rng.random() >= 0.2,
        min_runtime_s=rng.choice((0.0, 1800.0)), gpu_models=("H100",),
        submitted_at=NOW - rng.uniform(0, 86_400))


def borrower_workload(i: int, team: Team, rng: random.Random) -> Workload:
    roll = rng.random()
    workers, topo, priority = 1, TopologyLevel.ANY, rng.choice((0, 0, 0, 10, 50))
    models: tuple[str, ...] = ()
    if roll < 0.03:  # the A10G partition: only a move can make room
        res, models = BIG, ("A10G",)
    elif roll < 0.13:  # urgent work behind its own team's work on the H100s
        res, models, priority = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=64 * GIB), \
            ("H100",), 100
    else:
        shape = rng.random()
        if shape < 0.70:
            res = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=64 * GIB)
        elif shape < 0.85:
            if rng.random() < 0.5:
                res = WorkerResources(gpu_milli=rng.choice((250, 500)), cpu_milli=2000,
                                      memory_mib=16 * GIB)
                models = rng.choice((("L40S", "A100"), ("A100",), ("L40S",)))
            else:
                res = WorkerResources(gpu_memory_mib=30 * GIB, cpu_milli=2000,
                                      memory_mib=16 * GIB)
        elif shape < 0.95:
            res = BIG
        else:
            res, workers = BIG, rng.randint(2, 16)
            topo = rng.choice((TopologyLevel.ANY, TopologyLevel.ZONE))
        if not models and rng.random() < 0.3:
            models = (rng.choice(("H100", "A100", "L40S")),)
    return Workload(
        id=f"w{i:06d}", queue=team.name, resources=res, workers=workers, priority=priority,
        preemptible=rng.random() >= 0.1, min_runtime_s=rng.choice((0.0, 0.0, 1800.0)),
        gpu_models=models, topology=topo, submitted_at=NOW - rng.uniform(0, 86_400),
        # whole-GPU work that names no model needs a large device (not the 24 GB A10G)
        min_gpu_memory_mib=40 * GIB if res.gpus and not models else 0)


#: pending workloads of each owed team: few enough that reclaim's tries (the cycle's eviction
#: attempts are shared, reclaim goes before preemption) leave preemption some at every size
OWED_PENDING = 10


def contended_state(nodes: int, pending: int, seed: int) -> ClusterState:
    rng = random.Random(seed)
    pool = contended_pool(nodes, rng)
    queues, teams = contended_queues(8 * nodes)
    running = lay_out(pool, teams, rng)
    owed = [t for t in teams if t.kind == OWED]
    borrowers = [t for t in teams if t.kind == BORROWER]
    waiting = [owed_workload(i, t, rng) for i, t in
               enumerate(t for t in owed for _ in range(OWED_PENDING))][:pending]
    # The priority team (first in line) waits for three whole A10G nodes, behind the borrowers'
    # more urgent A10G work that the cycle's moves go to: it holds the cycle's reservation.
    first = next((k for k, w in enumerate(waiting) if w.queue in
                  {t.name for t in teams if t.priority}), None)
    if first is not None:
        waiting[first] = replace(waiting[first], resources=BIG, workers=3,
                                 gpu_models=("A10G",), priority=0)
    waiting += [borrower_workload(i, rng.choice(borrowers), rng)
                for i in range(len(waiting), pending)]
    return ClusterState(tuple(pool), tuple(queues), (*running, *waiting))
