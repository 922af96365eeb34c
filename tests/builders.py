"""Fluent builders for core objects: `job("a").queue("q").gpus(8).gang(4).build()`."""

from __future__ import annotations

from dataclasses import replace

from corral.core import (
    ClusterState,
    Node,
    Queue,
    TopologyLevel,
    WorkerAssignment,
    WorkerResources,
    Workload,
    WorkloadState,
)
from corral.core.model import CapacityKind


class NodeBuilder:
    def __init__(self, id: str) -> None:
        self._n = Node(id=id, provider="p", gpu_model="H100", gpu_count=8, gpu_memory_mib=80_000,
                       cpu_milli=128_000, memory_mib=1_000_000, price_per_gpu_hour=1.0)

    def gpus(self, n: int) -> NodeBuilder:
        self._n = replace(self._n, gpu_count=n)
        return self

    def model(self, m: str) -> NodeBuilder:
        self._n = replace(self._n, gpu_model=m)
        return self

    def mem(self, mib: int) -> NodeBuilder:
        self._n = replace(self._n, gpu_memory_mib=mib)
        return self

    def cpu(self, milli: int) -> NodeBuilder:
        self._n = replace(self._n, cpu_milli=milli)
        return self

    def price(self, p: float) -> NodeBuilder:
        self._n = replace(self._n, price_per_gpu_hour=p)
        return self

    def at(self, region: str = "r", zone: str = "z", rack: str = "", nvlink: str = "",
           provider: str = "p") -> NodeBuilder:
        self._n = replace(self._n, region=region, zone=zone, rack=rack, nvlink_domain=nvlink,
                          provider=provider)
        return self

    def cordoned(self) -> NodeBuilder:
        self._n = replace(self._n, cordoned=True)
        return self

    def kind(self, k: CapacityKind) -> NodeBuilder:
        self._n = replace(self._n, capacity_kind=k)
        return self

    def build(self) -> Node:
        return self._n


class JobBuilder:
    def __init__(self, id: str) -> None:
        self._w = Workload(id=id, queue="default", resources=WorkerResources(gpus=1))

    def queue(self, q: str) -> JobBuilder:
        return self._set(queue=q)

    def gpus(self, n: int) -> JobBuilder:
        return self._res(gpus=n, gpu_milli=0, gpu_memory_mib=0)

    def share(self, milli: int = 0, mem: int = 0) -> JobBuilder:
        return self._res(gpus=0, gpu_milli=milli, gpu_memory_mib=mem)

    def cpu(self, milli: int) -> JobBuilder:
        return self._res(cpu_milli=milli)

    def gang(self, n: int) -> JobBuilder:
        return self._set(workers=n)

    def priority(self, p: int) -> JobBuilder:
        return self._set(priority=p)

    def models(self, *m: str) -> JobBuilder:
        return self._set(gpu_models=tuple(m))

    def topology(self, level: TopologyLevel) -> JobBuilder:
        return self._set(topology=level)

    def max_price(self, p: float) -> JobBuilder:
        return self._set(max_price_per_gpu_hour=p)

    def submitted(self, t: float) -> JobBuilder:
        return self._set(submitted_at=t)

    def not_preemptible(self) -> JobBuilder:
        return self._set(preemptible=False)

    def min_runtime(self, s: float) -> JobBuilder:
        return self._set(min_runtime_s=s)

    def running(self, *where: tuple[str, tuple[int, ...]], since: float = 0.0,
                milli: int = 1000, mem: int = 80_000) -> JobBuilder:
        """Already running: one (node, devices) per worker."""
        assignments = tuple(WorkerAssignment(i, node, devices, milli if devices else 0,
                                             mem if devices else 0)
                            for i, (node, devices) in enumerate(where))
        return self._set(state=WorkloadState.RUNNING, started_at=since, assignments=assignments)

    def _set(self, **kw: object) -> JobBuilder:
        self._w = replace(self._w, **kw)  # type: ignore[arg-type]
        return self

    def _res(self, **kw: int) -> JobBuilder:
        return self._set(resources=replace(self._w.resources, **kw))

    def build(self) -> Workload:
        return self._w


def node(id: str) -> NodeBuilder:
    return NodeBuilder(id)


def job(id: str) -> JobBuilder:
    return JobBuilder(id)


def queue(name: str, quota: float = 0.0, limit: float | None = None, weight: float = 1.0,
          parent: str | None = None, priority: int = 0) -> Queue:
    return Queue(name, parent, quota, limit, weight, priority)


def state(nodes: list[NodeBuilder | Node], queues: list[Queue], work: list[JobBuilder | Workload]) -> ClusterState:
    return ClusterState(
        tuple(n.build() if isinstance(n, NodeBuilder) else n for n in nodes),
        tuple(queues),
        tuple(w.build() if isinstance(w, JobBuilder) else w for w in work),
    )
