"""A spot interruption notice in the live plane, on the local backend with real processes.

Two spot nodes of a provider (each its own instance, in zones r1a and r1b); a gang of
examples/train_ckpt.py (2 workers) runs on one. The provider warns that it takes that instance
back (a `Notice`, as the aws provider's instance-action would): the pool autoscaler cordons the
node and stops the gang with the preemption contract (SIGTERM, the deadline file, the grace),
each worker checkpoints and exits, the gang is requeued (no restart used up) and restarts on the
other node from the checkpoint both workers saved, and ends with the same weights as a run that
nothing interrupted. The interrupted instance is returned once idle. Nothing runs twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from chaos.plane import Plane, events, fault_free, results, train_args
from corral.autoscale.pool import AutoscalerConfig
from corral.backends.local import LocalBackend
from corral.control.autoscale import PoolAutoscaler
from corral.core.model import CapacityKind, Node
from corral.providers.base import CapacityState, Instance, Notice, Offer
from corral.store import pool as P

pytestmark = pytest.mark.slow
STEPS, EVERY = 400, 5


def _offer(zone: str) -> Offer:
    return Offer("cloud", "g2", "virtual-gpu", 2, 81_920, 16_000, 65_536, Decimal("1.00"),
                 CapacityKind.SPOT, "r1", zone, "catalog:test@2026-01-01", "2026-01-01")


class SpotCloud:
    """Two running spot instances, one per zone; `warn` is the provider's interruption event."""

    kind = "memory"
    name = "cloud"

    def __init__(self, now: float) -> None:
        self.live = {f"i-{z}": Instance(f"i-{z}", "cloud", _offer(f"r1{z}"),
                                        CapacityState.JOINING, "", now, None) for z in "ab"}
        self.warnings: list[Notice] = []
        self.terminated: list[str] = []

    def offers(self) -> list[Offer]:
        return []  # nothing more to rent: the other node is the capacity to restart on

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        raise AssertionError("nothing should be rented here")

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for iid in instance_ids:
            self.live[iid] = replace(self.live[iid], state=CapacityState.TERMINATED)
            self.terminated.append(iid)

    def instances(self) -> list[Instance]:
        return list(self.live.values())

    def notices(self) -> list[Notice]:
        return list(self.warnings)


def test_a_spot_notice_checkpoints_the_gang_and_restarts_it_elsewhere(tmp_path: Path) -> None:
    nodes = [Node(f"cloud-{z}", "cloud", "virtual-gpu", 2, 81_920, 16_000, 65_536,
                  price_per_gpu_hour=0.5, capacity_kind=CapacityKind.SPOT, region="r1",
                  zone=f"r1{z}") for z in "ab"]
    plane = Plane.start(tmp_path, LocalBackend(tmp_path / "work", nodes=nodes), grace_s=5.0)


    cloud = SpotCloud(time.time())
    scaler = PoolAutoscaler(plane.store, {"cloud": cloud}, "c1", "http://unused",
                            lambda n: "unused", AutoscalerConfig(idle_timeout_s=3600),
                            every_s=0.2, joined=lambda ids: {f"i-{z}": f"cloud-{z}" for z in "ab"
                                                             if f"i-{z}" in ids})
    plane.loop.autoscaler = scaler
    ckpt = tmp_path / "ckpt"
    wid = plane.submit("spot", train_args(STEPS, 0.02, EVERY), workers=2, gpus=1,
                       max_restarts=0, checkpoint_dir=str(ckpt), preemptible=True)
    try:
        plane.run_until(lambda: all(
            any(e["event"] == "step" and e["step"] >= 2 * EVERY for e in events(ckpt, w))
            for w in (0, 1)), "the gang to checkpoint twice", timeout=120)
        (first,) = set(plane.nodes_of(wid, 0))
        doomed = f"i-{first[-1]}"
        cloud.warnings.append(Notice(doomed, time.time() + 120, "spot/instance-action"))
        plane.run_until(lambda: plane.record(wid).attempt == 1 and
                        plane.record(wid).state == "running", "the gang to restart", timeout=120)
        second = set(plane.nodes_of(wid, 1))
        plane.run_until(lambda: plane.record(wid).state in ("succeeded", "failed"),
                        "the job to end", timeout=240)
        plane.run_until(lambda: doomed in cloud.terminated, "the instance to be returned",
                        timeout=30)
        rec = plane.record(wid)
        kinds = plane.workload_events(wid)
        with plane.store.read() as c:
            cordoned = {n.id for n in P.list_nodes(c) if n.cordoned}
    finally:
        plane.store.close()
    assert second == {f"cloud-{'b' if first.endswith('a') else 'a'}"}  # elsewhere
    assert (rec.state, rec.attempt, rec.restart_count) == ("succeeded", 1, 0)
    assert ("node", "SpotInterrupted", "") in kinds  # the stop, with the notice's deadline
    assert cordoned == {first}
    # each worker checkpointed on SIGTERM within its deadline and resumed from it
    for w in (0, 1):
        mine = events(ckpt, w)
        resumed = [e for e in mine if e["event"] == "resume"]
        assert len(resumed) == 1 and resumed[0]["attempt"] == 1
        stopped_at = max(e["step"] for e in mine if e["attempt"] == 0 and e["event"] == "step")
        assert stopped_at < STEPS  # it was interrupted part-way, not at the end
    assert results(ckpt, 2) == fault_free(tmp_path, 2, STEPS, EVERY)
