"""Fluent builders for the autoscaler's tests: offers, waiting work, instances."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from corral.autoscale.pool import NodeUse, Waiting
from corral.core import reasons as R
from corral.core.model import CapacityKind, TopologyLevel, WorkerResources, Workload
from corral.providers.base import CapacityState, Instance, Offer

SPOT, ON_DEMAND, OWNED = CapacityKind.SPOT, CapacityKind.ON_DEMAND, CapacityKind.OWNED


def offer(provider: str = "aws", itype: str = "p5.48xlarge", model: str = "H100", gpus: int = 8,
          price: str = "98.32", kind: CapacityKind = ON_DEMAND, zone: str = "us-east-1a",
          mem: int = 81_920, cpu: int = 192_000, ram: int = 2_097_152,
          region: str | None = None) -> Offer:
    return Offer(provider, itype, model, gpus, mem, cpu, ram, Decimal(price), kind,
                 region or zone[:-1], zone, "catalog:test@2026-01-01", "2026-01-01")


P5 = offer()
P5_SPOT = offer(price="40.00", kind=SPOT)
P5_SPOT_B = offer(price="42.00", kind=SPOT, zone="us-east-1b")
A3 = offer("gcp", "a3-highgpu-8g", price="88.25", zone="us-central1-a")
LAMBDA_H100 = offer("lambda", "gpu_8x_h100_sxm5", price="23.92", zone="us-east-3a")
G6 = offer("aws", "g6.xlarge", "L4", 1, "0.80", mem=23_034, cpu=4_000, ram=16_384)
G6_4 = offer("aws", "g6.12xlarge", "L4", 4, "4.60", mem=23_034, cpu=48_000, ram=196_608)
A100_1 = offer("lambda", "gpu_1x_a100", "A100", 1, "1.29", zone="us-west-1a", mem=40_960,
               cpu=30_000, ram=204_800)


class WorkBuilder:
    def __init__(self, wid: str) -> None:
        self.w = Workload(wid, "team", WorkerResources(gpus=1, cpu_milli=4_000, memory_mib=16_384))
        self.reason = R.INSUFFICIENT_CAPACITY

    def gpus(self, n: int) -> WorkBuilder:
        self.w = replace(self.w, resources=replace(self.w.resources, gpus=n))
        return self

    def share(self, milli: int) -> WorkBuilder:
        self.w = replace(self.w, resources=replace(self.w.resources, gpus=0, gpu_milli=milli))
        return self

    def cpu(self, milli: int, mem_mib: int) -> WorkBuilder:
        self.w = replace(self.w, resources=replace(self.w.resources, cpu_milli=milli,
                                                   memory_mib=mem_mib))
        return self

    def gang(self, n: int) -> WorkBuilder:
        self.w = replace(self.w, workers=n)
        return self

    def models(self, *m: str) -> WorkBuilder:
        self.w = replace(self.w, gpu_models=m)
        return self

    def kinds(self, *k: CapacityKind) -> WorkBuilder:
        self.w = replace(self.w, capacity_kinds=k)
        return self

    def cap(self, price: float) -> WorkBuilder:
        self.w = replace(self.w, max_price_per_gpu_hour=price)
        return self

    def min_mem(self, mib: int) -> WorkBuilder:
        self.w = replace(self.w, min_gpu_memory_mib=mib)
        return self

    def topology(self, level: TopologyLevel) -> WorkBuilder:
        self.w = replace(self.w, topology=level)
        return self

    def select(self, key: str, value: str) -> WorkBuilder:
        self.w = replace(self.w, node_selector=((key, value),))
        return self

    def stable(self) -> WorkBuilder:
        self.w = replace(self.w, preemptible=False)
        return self

    def priority(self, p: int) -> WorkBuilder:
        self.w = replace(self.w, priority=p)
        return self

    def at(self, t: float) -> WorkBuilder:
        self.w = replace(self.w, submitted_at=t)
        return self

    def because(self, code: str) -> WorkBuilder:
        self.reason = code
        return self

    def build(self) -> Waiting:
        return Waiting(self.w, self.reason)


def job(wid: str = "j1") -> WorkBuilder:
    return WorkBuilder(wid)


def instance(iid: str, o: Offer, state: CapacityState = CapacityState.READY, node: str | None = None,
             launched_at: float = 0.0) -> Instance:
    if node is None and state in (CapacityState.READY, CapacityState.DRAINING):
        node = f"node-{iid}"
    return Instance(iid, o.provider, o, state, "", launched_at, node)


def idle(since: float) -> NodeUse:
    return NodeUse(running=0, non_preemptible=0, idle_since=since)


def busy(n: int = 1, stable: int = 0) -> NodeUse:
    return NodeUse(running=n, non_preemptible=stable, idle_since=None)
