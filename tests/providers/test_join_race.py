"""A node rented for waiting work stays that work's capacity from its agent's registration until
the loop's snapshot has it (issue 11, stop 33's CI: a live `corral up` rented a second, spare
g6.xlarge 1 s after renting one g6.12xlarge for a 3-GPU and a 1-GPU job).

The order that raced, driven step by step (control loop, fake backend, in-memory provider,
manual clock; no sleeps): the instance is rented for both jobs; its agent registers (the
agents' table names its node: `corral.store.agents.join`) while its node is not in the pool
yet (the agent backend adds it later); an autoscaler pass runs. The join hold took the
instance's "rented for" list at the registration, so that pass saw an instance on its way
rented for nobody, and the room-price rule kept the 1-GPU job off its 4-GPU room (dearer per
GPU-hour than a 1-GPU offer): a second instance was rented. Like the cluster-autoscaler's
upcoming nodes (registered, not ready yet: clusterstate.GetUpcomingNodes), the instance now
keeps its work until its node is in the pool."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from tests.control.rig import Rig
from tests.control.test_autoscale import OFFER, MemoryProvider

from corral.autoscale.pool import AutoscalerConfig
from corral.control import ManualClock
from corral.control.autoscale import PoolAutoscaler
from corral.providers.base import Instance, Offer
from corral.store import pool as P

#: 1 GPU at 1.50/h: cheaper per GPU-hour than OFFER's 4 GPUs at 8.00/h (2.00 per GPU-hour)
ONE = replace(OFFER, instance_type="h100x1", gpus=1, cpu_milli=16_000, memory_mib=65_536,
              price_per_hour=Decimal("1.50"))


class TwoOffers(MemoryProvider):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    def offers(self) -> list[Offer]:
        return [OFFER, ONE]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        out = [replace(i, launched_at=self.clock.now())
               for i in super().launch(offer, count, user_data=user_data, tags=tags)]
        self.live.update((i.id, i) for i in out)
        return out

    def rented(self) -> list[str]:
        return [i.offer.instance_type for i in self.live.values()]


def _pool(rig: Rig, *ids: str) -> None:
    with rig.store.write() as c:
        P.sync_nodes(c, [{"name": "local"}], [n for n in rig.nodes if n.id in ids])


def _rented_for_both(rig: Rig) -> tuple[TwoOffers, dict[str, str], str, str]:
    store, provider, joined = rig.store, TwoOffers(rig.clock), {}
    rig.loop.autoscaler = PoolAutoscaler(
        store, {"cloud": provider}, "c1", "https://corral.test", lambda n: "cjt_test",
        AutoscalerConfig(idle_timeout_s=600, join_timeout_s=600), every_s=10.0,
        joined=lambda ids: {i: joined[i] for i in ids if i in joined})
    _pool(rig, "n0")  # n1 joins the pool later, as "its" instance's node
    rig.submit(gpus=4, preemptible=False)  # holds n0 for the whole test
    rig.step(n=1)
    three = rig.submit(gpus=3, preemptible=False)
    rig.clock.advance(1.0)  # older: first in the core's order, as in the live test
    one = rig.submit(gpus=1, preemptible=False)
    rig.step(n=10)  # the autoscaler's next pass
    assert provider.rented() == ["h100x4"]  # one instance for both jobs
    return provider, joined, three, one


def test_a_registered_node_not_yet_in_the_pool_keeps_the_work_it_was_rented_for(
        rig: Rig) -> None:
    provider, joined, three, one = _rented_for_both(rig)
    joined["i-1"] = "n1"  # the agent registered; its node is not in the pool yet
    rig.step(n=12)  # past the next pass (every 10 s), the join hold made at the first step
    assert provider.rented() == ["h100x4"]  # nothing rented for the 1-GPU job
    _pool(rig, "n0", "n1")  # the agent backend adds the node to the pool
    rig.step(n=3)
    assert {rig.state(three), rig.state(one)} <= {"starting", "running"}
    assert provider.rented() == ["h100x4"]


def test_a_registration_first_seen_at_a_pass_keeps_it_too(rig: Rig) -> None:
    """The join hold and the pass see the registration in the same step."""
    provider, joined, _three, _one = _rented_for_both(rig)
    scaler = rig.loop.autoscaler
    assert scaler is not None and scaler.last_at is not None
    while rig.clock.now() < scaler.last_at + scaler.every_s:  # to the step of the next pass
        rig.step(n=1)
    joined["i-1"] = "n1"
    rig.step(n=1)
    assert scaler.last_at == rig.clock.now() - 1.0  # that step was a pass
    assert provider.rented() == ["h100x4"]
