"""The spot fallback in the live plane (issue 11): interrupted work that says how it checkpoints
(`checkpoint:`) stays on spot while spot, its interruptions counted, is cheaper than on-demand
(the pool file's `autoscaler.spot_risk`); work that says nothing keeps the plain count
(`spot_fallback_after`). The control loop on a fake backend and a manual clock, a real store
(SQLite, PostgreSQL), and an in-memory provider with one spot and one on-demand offer that
warns before it takes an instance back; every verdict is an event on the workload.

Figures of the provider: 4 x H100, spot 4.00/h (1.00/GPU-h), on-demand 8.00/h (2.00/GPU-h).
Low risk (mtbi 6h, notice 2m, restart 4m), a job writing a checkpoint in 20 s on notice:
1.00 x (1 + 240 / 21,600) = 1.011 < 2.00: spot. High risk (mtbi 10m), a job checkpointing every
30m and never on notice: 1.00 x (1 + (900 + 240) / 600) = 2.90 > 2.00: on-demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from tests.control.rig import Rig

from corral.autoscale.pool import AutoscalerConfig
from corral.autoscale.spot import SpotRisk
from corral.control.autoscale import HOST_NOTICE, SPOT_INTERRUPTED, PoolAutoscaler
from corral.control.drain_stops import stop_work
from corral.control.spot_inputs import ON_DEMAND_ONLY, SPOT_KEPT
from corral.core.model import CapacityKind, Node
from corral.providers.base import CapacityState, Instance, Notice, Offer
from corral.store import Store, audit
from corral.store import pool as P
from corral.store import workloads as W


def _offer(kind: CapacityKind, price: str) -> Offer:
    return Offer("cloud", f"h100x4-{kind}", "H100", 4, 81_920, 64_000, 262_144, Decimal(price),
                 kind, "r1", "r1a", "catalog:test@2026-01-01", "2026-01-01")


SPOT, ON_DEMAND = _offer(CapacityKind.SPOT, "4.00"), _offer(CapacityKind.ON_DEMAND, "8.00")
LOW = SpotRisk(mtbi_s=6 * 3600.0, notice_s=120.0, restart_s=240.0)
HIGH = SpotRisk(mtbi_s=600.0, notice_s=120.0, restart_s=240.0)
ON_NOTICE = {"on_notice": "20s"}  # nothing lost on a 2-minute notice
PERIODIC = {"every": "30m"}  # half an interval lost per interruption


class SpotCloud:
    """Rents both offers; `warn` is the provider's interruption notice of an instance."""

    kind = "memory"
    name = "cloud"

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.live: dict[str, Instance] = {}
        self.warnings: list[Notice] = []

    def offers(self) -> list[Offer]:
        return [SPOT, ON_DEMAND]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        out = []
        for _ in range(count):
            iid = f"i-{len(self.live) + 1}"
            out.append(Instance(iid, "cloud", offer, CapacityState.PROVISIONING, "",
                                self.now(), None))
            self.live[iid] = out[-1]
        return out

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for iid in instance_ids:
            self.live[iid] = replace(self.live[iid], state=CapacityState.TERMINATED)

    def instances(self) -> list[Instance]:
        return list(self.live.values())

    def notices(self) -> list[Notice]:
        return [n for n in self.warnings
                if self.live[n.instance_id].state != CapacityState.TERMINATED]


class Plane:
    """The rig, the provider and the autoscaler; instances join as nodes when `join` says."""

    def __init__(self, store: Store, risk: SpotRisk | None, via_host: bool = False) -> None:
        self.store, self.rig, self.via_host = store, Rig(store), via_host
        self.cloud = SpotCloud(self.rig.clock.now)
        # the rig's nodes are owned, which the job may not use; a 1-GPU on-demand node, too
        # small for it, makes it wait for lack of room (which the autoscaler rents for), not
        # for a capacity kind the pool lacks (which it does not: CapacityUnavailable)
        self.join(Node("cloud-small", "cloud", "H100", 1, 81_920, 64_000, 262_144,
                       capacity_kind=CapacityKind.ON_DEMAND, region="r1", zone="r1a"))
        # what the cloud could rent, for the submission's "can this ever run" (as the server's
        # pool_providers.rentable_nodes)
        self.rig.submissions.rentable = lambda conn: [
            Node(f"rentable/{o.capacity_kind}", "cloud", "H100", 4, 81_920, 64_000, 262_144,
                 capacity_kind=o.capacity_kind, region="r1", zone="r1a") for o in (SPOT, ON_DEMAND)]
        self.joined: dict[str, str] = {}
        config = AutoscalerConfig(idle_timeout_s=3600, spot_fallback_after=2,
                                  spot_risk={"cloud": risk} if risk else {})
        self.rig.loop.autoscaler = PoolAutoscaler(
            store, {"cloud": self.cloud}, "c1", "https://corral.test", lambda n: "cjt_test",
            config, every_s=10.0,
            joined=lambda ids: {i: self.joined[i] for i in ids if i in self.joined})

    def submit(self, checkpoint: dict[str, str] | None) -> str:
        extra: dict[str, Any] = {} if checkpoint is None else {"checkpoint": checkpoint}
        return self.rig.submit(gpus=4, capacity=["spot", "on-demand"], **extra)

    def launched(self) -> list[Instance]:
        return list(self.cloud.live.values())

    def until(self, done: Callable[[], bool], what: str, steps: int = 60) -> None:
        for _ in range(steps):
            if done():
                return
            self.rig.step()
        raise AssertionError(f"not within {steps} s: {what}")

    def run_on_new_instance(self, wid: str, seen: int) -> Instance:
        """Step until an instance is rented for `wid` (the `seen`+1-th), join it, step until
        `wid` runs there."""
        self.until(lambda: len(self.cloud.live) > seen, "an instance rented for the job")
        assert len(self.cloud.live) == seen + 1, "one instance rented for the waiting job"
        i = self.launched()[-1]
        node = Node(f"cloud-{i.id}", "cloud", "H100", 4, 81_920, 64_000, 262_144,
                    price_per_gpu_hour=float(i.offer.price_per_gpu_hour),
                    capacity_kind=i.offer.capacity_kind, region="r1", zone="r1a")
        self.join(node)
        self.joined[i.id] = node.id
        self.until(lambda: self.rig.state(wid) == "running", "the job to run")
        return i

    def join(self, node: Node) -> None:
        """`node` enters the pool (its agent registered) and the fake backend."""
        self.rig.world.nodes[node.id] = node
        with self.store.write() as c:
            known = P.list_nodes(c, include_inactive=True)
            P.sync_nodes(c, [{"name": "local"}, {"name": "cloud"}], [*known, node])

    def interrupt(self, wid: str, i: Instance) -> None:
        """The provider warns that it takes `i` back (or, `via_host`, the agent read the
        warning on the host: `POST /agent/v1/notice`): the job is stopped and requeued."""
        attempt = self.rig.get(wid).attempt
        if self.via_host:  # what act_on_host_notice does to an agent's workers (the fake
            node, now = self.joined[i.id], self.rig.clock.now()  # backend has no agent)
            with self.store.write() as c:
                P.set_cordoned(c, node, True)
                stopped = stop_work(c, now, [wid], SPOT_INTERRUPTED, "read on the host", node)
                audit.record(c, at=now, actor="agent", action=HOST_NOTICE, target=node,
                             detail={"instance": i.id, "action": "terminate",
                                     "deadline": now + 120, "stopped": stopped})
        else:
            self.cloud.warnings.append(Notice(i.id, self.rig.clock.now() + 120, "spot"))
        self.until(lambda: self.rig.get(wid).attempt == attempt + 1, "the job requeued")
        assert self.rig.get(wid).restart_count == 0  # an interruption spends no restart

    def verdicts(self, wid: str) -> list[tuple[str, str]]:
        with self.store.read() as c:
            return [(e.reason, e.message) for e in W.list_events(c, workload_id=wid)
                    if e.reason in (SPOT_KEPT, ON_DEMAND_ONLY)]


def _rented_after(plane: Plane, wid: str, interruptions: int) -> list[CapacityKind]:
    """The capacity kinds rented for `wid`: first, then after each interruption."""
    kinds = []
    for n in range(interruptions):
        i = plane.run_on_new_instance(wid, seen=n)
        kinds.append(i.offer.capacity_kind)
        if i.offer.capacity_kind != CapacityKind.SPOT:
            return kinds  # on-demand is not interrupted
        plane.interrupt(wid, i)
    plane.until(lambda: len(plane.cloud.live) > interruptions, "an instance rented for the job")
    kinds.append(plane.launched()[-1].offer.capacity_kind)
    return kinds


@pytest.mark.parametrize("via_host", [False, True], ids=["provider-notice", "host-notice"])
def test_checkpointing_work_stays_on_spot_where_interruptions_are_rare(store: Store,
                                                                       via_host: bool) -> None:
    """Interrupted twice, as often as the count allows: still spot, since 1.011 < 2.00;
    whether the provider's notice or the agent's on the host told of it."""
    plane = Plane(store, LOW, via_host)
    wid = plane.submit(ON_NOTICE)
    assert _rented_after(plane, wid, 2) == [CapacityKind.SPOT] * 3
    told = plane.verdicts(wid)
    assert [r for r, _ in told] == [SPOT_KEPT, SPOT_KEPT]
    assert "costs 1.011/GPU-h with interruptions counted, on-demand 2.000" in told[-1][1]


def test_checkpointing_work_goes_on_demand_where_interruptions_are_frequent(
        store: Store) -> None:
    """Interrupted once, under the count: on-demand at once, since 2.90 > 2.00."""
    plane = Plane(store, HIGH)
    wid = plane.submit(PERIODIC)
    assert _rented_after(plane, wid, 1) == [CapacityKind.SPOT, CapacityKind.ON_DEMAND]
    told = plane.verdicts(wid)
    assert [r for r, _ in told] == [ON_DEMAND_ONLY]
    assert "spot costs 2.900/GPU-h with interruptions counted" in told[0][1]
    assert "on-demand 2.000" in told[0][1]


@pytest.mark.parametrize("risk", [None, HIGH], ids=["no-spot-risk", "spot-risk-set"])
def test_work_that_declares_no_checkpoint_keeps_the_count(store: Store,
                                                         risk: SpotRisk | None) -> None:
    """Without `checkpoint:` the count decides, whatever the providers' risk: spot after the
    first interruption, on-demand only after the second (spot_fallback_after 2)."""
    plane = Plane(store, risk)
    wid = plane.submit(None)
    assert _rented_after(plane, wid, 2) == [CapacityKind.SPOT] * 2 + [CapacityKind.ON_DEMAND]
    told = plane.verdicts(wid)
    assert [r for r, _ in told] == [SPOT_KEPT, ON_DEMAND_ONLY]
    assert "interrupted 2 times, spot_fallback_after is 2" in told[1][1]
    assert "it does not say how it checkpoints (checkpoint:)" in told[1][1]


HOURLY = {"every": "1h"}  # 30 minutes lost per interruption on average


@pytest.mark.parametrize("history,expected", [
    (0, [CapacityKind.SPOT] * 3),
    (20, [CapacityKind.SPOT, CapacityKind.ON_DEMAND]),
], ids=["nothing-recorded", "frequent-interruptions-recorded"])
def test_without_spot_risk_the_rate_is_estimated_from_recorded_interruptions(
        store: Store, history: int, expected: list[CapacityKind]) -> None:
    """No `spot_risk` for the cloud: its rate comes from the interruptions corral recorded
    (control/spot_rates.py), with spot.py's prior of one in 6 h. Nothing recorded but this
    test's own (n = 1, 2 in under 2 minutes of spot time): mtbi ~(6 h) / (1 + n) >= 2 h,
    1.00 x (1 + (1,800 + 305) / 7,200) = 1.29 < 2.00: spot twice, past the count. Twenty earlier
    instances each taken back after 10 minutes: mtbi ~(21,600 + 12,000) / 22 = 1,527 s,
    1.00 x (1 + 2,105 / 1,527) = 2.38 > 2.00: on-demand after the first."""
    plane = Plane(store, None)
    with store.write() as c:  # what the autoscaler recorded before (its own records' form)
        for k in range(history):
            audit.record(c, at=k * 3600.0, actor="autoscaler", action="autoscale.launch",
                         target=f"old-{k}", detail={"offer": {"provider": "cloud",
                                                              "capacity_kind": "spot"},
                                                    "instances": [f"old-{k}"]})
            audit.record(c, at=k * 3600.0 + 600, actor="autoscaler",
                         action="autoscale.interrupted", target=f"cloud-old-{k}",
                         detail={"instance": f"old-{k}"})
    wid = plane.submit(HOURLY)
    assert _rented_after(plane, wid, len(expected) - 1) == expected
    told = [r for r, _ in plane.verdicts(wid)]
    assert told == ([SPOT_KEPT] * 2 if history == 0 else [ON_DEMAND_ONLY])
