"""`corral providers rm NAME --force | --timeout`, a removal that outlives the pool file, and
price caps of spot-only work against the spot prices the autoscaler saw (issue 11).

The control loop runs on the fake backend with a manual clock and an in-memory provider
(tests/control/test_runtime_providers.py's rig): what is asserted is what the store and the
provider see."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from tests.control.test_runtime_providers import (
    AWS,
    CloudProvider,
    _holding,
    _join,
    _rig_with_cloud,
)

from corral.control import pool_providers as PP
from corral.control.submission import Submissions
from corral.core.model import CapacityKind, Queue
from corral.providers.base import Offer
from corral.spec import SpecError, WorkloadSpec
from corral.spec.pool import PoolSpec
from corral.store import Store, audit
from corral.store import pool as P
from corral.store.database import sqlite_url


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(sqlite_url(tmp_path / "corral.db"))
    s.upgrade()
    yield s
    s.close()


def _busy_instance(store: Store, provider: CloudProvider):  # type: ignore[no-untyped-def]
    """A rig whose one rented instance runs a job that may not be preempted."""
    rig, _, joined = _rig_with_cloud(store, provider)
    fill = [rig.submit(gpus=4, preemptible=False) for _ in range(2)]  # the local nodes, busy
    rig.step(n=3)
    stays = rig.submit(gpus=2, preemptible=False, command=["long"])
    rig.step(n=12)
    (iid,) = provider.live
    node = _join(rig, store, provider, joined, iid)
    rig.step(n=12)
    assert _holding(store, stays) == {node}
    return rig, iid, node, stays, fill


def test_rm_force_stops_work_that_may_not_be_preempted_and_returns_the_instance(
        store: Store) -> None:
    provider = CloudProvider()
    rig, iid, node, stays, _ = _busy_instance(store, provider)
    with store.write() as c:
        gone = PP.retire_provider(c, "cloud", by="root", now=rig.clock.now(), timeout_s=0.0)
    assert gone is not None and gone.retire_by == rig.clock.now()
    rig.step(n=30)
    rec = rig.get(stays)
    # stopped with the preemption contract and requeued: no restart spent
    assert ("running", "preempted", "ProviderRemoved") in rig.transitions(stays)
    assert rec.attempt == 1 and rec.restart_count == 0
    assert provider.terminated == [iid]
    with store.read() as c:
        (removed,) = PP.declared_providers(c, include_removed=True)
        stops = [e.target for e in audit.list_audit(c, actor="autoscaler")
                 if e.action == "autoscale.removal_timeout"]
    assert removed.lifecycle == PP.REMOVED and stops == [node]


def test_rm_with_a_timeout_waits_for_the_work_until_the_timeout(store: Store) -> None:
    provider = CloudProvider()
    rig, iid, _, stays, _ = _busy_instance(store, provider)
    with store.write() as c:
        PP.retire_provider(c, "cloud", by="root", now=rig.clock.now(), timeout_s=60.0)
    rig.step(n=30)  # 30 s: under the timeout, the job runs on and the instance stays
    assert rig.state(stays) == "running" and provider.terminated == []
    # a second rm without a timeout keeps the deadline (it may only come closer)
    with store.write() as c:
        again = PP.retire_provider(c, "cloud", by="root", now=rig.clock.now())
    assert again is not None and again.retire_by is not None
    rig.step(n=60)  # past it: stopped, requeued, the instance returned
    assert ("running", "preempted", "ProviderRemoved") in rig.transitions(stays)
    assert rig.get(stays).restart_count == 0 and provider.terminated == [iid]


def test_a_removed_provider_stays_removed_when_the_pool_file_still_declares_it(
        store: Store) -> None:
    spec = PoolSpec.model_validate({"providers": [AWS]})
    declared = [p.model_dump(mode="json", exclude={"node_groups"}) for p in spec.providers]
    with store.write() as c:  # `corral up` with the pool file
        P.sync_nodes(c, declared, [])
        PP.retire_provider(c, "cloud", by="root", now=0.0)
    PP.mark_removed(store, "cloud", 1.0)
    with store.write() as c:  # a restart with the same pool file
        P.sync_nodes(c, declared, [])
    scaler = PP.autoscaler_from_pool(store, spec, "c1", "http://x", lambda: 0.0,
                                     build=lambda s: CloudProvider())
    assert scaler.reload is not None and scaler.reload()[0] == {}  # nothing rents from it
    with store.read() as c:
        assert [(d.spec.name, d.lifecycle) for d in
                PP.declared_providers(c, include_removed=True)] == [("cloud", PP.REMOVED)]
    with store.write() as c:  # `corral providers add` brings it back
        PP.add_provider(c, spec.providers[0], by="root", now=2.0)
    assert set(scaler.reload()[0]) == {"cloud"}


def _spot(price_per_gpu: str, zone: str = "us-east-1a") -> Offer:
    return Offer("aws-use1", "g6.12xlarge", "L4", 4, 23_034, 48_000, 196_608,
                 Decimal(price_per_gpu) * 4, CapacityKind.SPOT, "us-east-1", zone,
                 "aws:spot-price-history", "2026-12-03")


def test_spot_only_work_capped_under_every_spot_offer_is_refused_at_submission(
        store: Store) -> None:
    aws = {"name": "aws-use1", "kind": "aws", "settings": {
        "region": "us-east-1", "image_id": "ami-0123abcd", "instance_types": ["g6.12xlarge"],
        "capacity_kinds": ["spot"]}}
    with store.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=64))
        PP.add_provider(c, PoolSpec.model_validate({"providers": [aws]}).providers[0],
                        by="root", now=0.0)
    subs = Submissions(store, rentable=PP.rentable_nodes)
    capped = WorkloadSpec.model_validate({"name": "w", "queue": "q", "command": ["x"],
                                          "gpus": 1, "capacity": ["spot"],
                                          "max_price_per_gpu_hour": 0.25})
    try:
        subs.check(capped)  # no spot price seen yet: accepted, it waits with the reason
        seen = PP.spot_prices_hook(subs.invalidate)
        seen([_spot("0.40"), _spot("0.31", "us-east-1b")])
        with pytest.raises(SpecError) as e:
            subs.check(capped)
        text = str(e.value)
        assert "max_price_per_gpu_hour" in text and "0.25" in text and "0.31" in text
        subs.check(capped.model_copy(update={"max_price_per_gpu_hour": 0.35}))  # above: fine
    finally:
        PP.SPOT_SEEN.update([])  # the process-wide memory: leave it empty for other tests


def test_the_autoscaler_reads_a_notice_read_on_the_host_and_does_not_act_twice(
        store: Store) -> None:
    """`act_on_host_notice` (the agent's POST /agent/v1/notice) stops the work in the request;
    the next pass remembers the place for it, drains the node, returns the instance once idle,
    and the provider's own notice of the same instance is then not acted on again."""
    from corral.control.autoscale import HOST_NOTICE
    from corral.providers.base import Notice

    provider = CloudProvider(CapacityKind.SPOT)
    rig, scaler, joined = _rig_with_cloud(store, provider)
    (instance,) = provider.launch(provider.offers()[0], 1, user_data="", tags={})
    iid = instance.id
    node = _join(rig, store, provider, joined, iid)
    rig.step(n=8)
    with store.write() as c:  # what the request wrote (the fake backend has no agent workers)
        audit.record(c, at=rig.clock.now(), actor="agent", action=HOST_NOTICE, target=node,
                     detail={"instance": iid, "stopped": ["w-gone"]})
    provider.warnings.append(Notice(iid, rig.clock.now() + 120, "spot/instance-action"))
    rig.step(n=10)
    assert scaler.state.interruptions["w-gone"].places == (("cloud", "r1a"),)
    assert iid in scaler.interrupted and node in scaler.draining
    with store.read() as c:
        acted = [e.target for e in audit.list_audit(c, actor="autoscaler")
                 if e.action == "autoscale.interrupted"]
    assert acted == []  # the host's notice came first: the provider's is not acted on again
    assert iid in provider.terminated  # drained and idle: returned
