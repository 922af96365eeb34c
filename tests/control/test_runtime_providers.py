"""Renting providers at run time and spot interruptions, in the control loop.

- `POST/DELETE /v1/providers/declared`: admin only, refused with the field named, no secret accepted or
  returned; kept in the store, so a restarted control plane (a new autoscaler) rents from it.
- `rm` drains: the node is cordoned, preemptible work is requeued with the preemption contract,
  non-preemptible work runs to its end, and only then is the instance returned and the provider
  marked removed.
- A spot interruption notice (a provider event) drains the node at once: the gang gets its stop
  (the preemption signal, the deadline in the message), is requeued without using a restart and
  restarts elsewhere from its checkpoint (attempt + 1); capacity is rented again for it, and the
  interrupted instance is returned once idle.

The backend is the fake one and the provider in memory (the aws one is tested against moto in
tests/providers; the spot path with real agents is bench/autoscale.py --spot)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from tests.api.harness import build
from tests.control.rig import Rig

from corral.autoscale.pool import AutoscalerConfig
from corral.control import pool_providers as PP
from corral.core.model import CapacityKind, Node
from corral.providers.base import CapacityState, Instance, Notice, Offer
from corral.spec.pool import ProviderSpec
from corral.store import Store, audit
from corral.store import pool as P
from corral.store import workloads as W

AWS = {"name": "cloud", "kind": "aws", "max_nodes": 4,
       "settings": {"region": "r1", "image_id": "ami-0123abcd", "instance_types": ["h100x4"],
                    "profile": "corral-prod"}}


def _offer(kind: CapacityKind, zone: str = "r1a") -> Offer:
    return Offer("cloud", "h100x4", "H100", 4, 81_920, 64_000, 262_144, Decimal("8.00"), kind,
                 "r1", zone, "catalog:test@2026-01-01", "2026-01-01")


class CloudProvider:
    """In memory, with spot notices: `interrupt(iid, deadline)` is the provider's event."""

    kind = "memory"

    def __init__(self, kind: CapacityKind = CapacityKind.ON_DEMAND,
                 clock: Callable[[], float] = lambda: 1_000_000.0) -> None:
        self.name = "cloud"
        self.clock = clock
        self.capacity = kind
        self.live: dict[str, Instance] = {}
        self.terminated: list[str] = []
        self.warnings: list[Notice] = []

    def offers(self) -> list[Offer]:
        return [_offer(self.capacity, "r1a"), _offer(self.capacity, "r1b")]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        out = []
        for _ in range(count):
            iid = f"i-{len(self.live) + 1}"
            self.live[iid] = Instance(iid, self.name, offer, CapacityState.PROVISIONING, "",
                                      self.clock(), None)
            out.append(self.live[iid])
        return out

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for iid in instance_ids:
            if iid in self.live and self.live[iid].state != CapacityState.TERMINATED:
                self.live[iid] = replace(self.live[iid], state=CapacityState.TERMINATED)
                self.terminated.append(iid)

    def instances(self) -> list[Instance]:
        return list(self.live.values())

    def notices(self) -> list[Notice]:
        return [n for n in self.warnings if self.live[n.instance_id].state
                != CapacityState.TERMINATED]


def _audit(store: Store, action: str) -> list[str]:
    with store.read() as c:
        return [e.target for e in audit.list_audit(c, actor="autoscaler") if e.action == action]


# -- the API ------------------------------------------------------------------------------------
def test_providers_are_added_and_removed_by_admins_and_kept_in_the_store(store: Store) -> None:
    api = build(store)
    r = api.client.post("/v1/providers/declared", json=AWS, headers=api.ann)
    assert r.status_code == 403
    r = api.client.post("/v1/providers/declared", json=AWS, headers=api.admin)
    assert r.status_code == 201, r.text
    assert r.json()["lifecycle"] == "active" and r.json()["origin"] == "api"
    assert api.client.post("/v1/providers/declared", json=AWS, headers=api.admin).status_code == 409
    listed = api.client.get("/v1/providers/declared", headers=api.admin).json()
    assert [(p["name"], p["kind"], p["settings"]["profile"]) for p in listed] == [
        ("cloud", "aws", "corral-prod")]
    assert api.client.get("/v1/providers/declared", headers=api.ann).status_code == 403
    # a restart: a new autoscaler reads the store and builds the provider
    built: list[str] = []
    scaler = PP.autoscaler_from_pool(store, None, "c1", "http://x", lambda: 0.0,
                                     build=lambda s: built.append(s.name) or CloudProvider())
    assert scaler.reload is not None
    providers, limits, retiring = scaler.reload()
    assert set(providers) == {"cloud"} and limits["cloud"].max_nodes == 4 and not retiring
    assert built == ["cloud"]
    r = api.client.delete("/v1/providers/declared/cloud", headers=api.admin)
    assert r.status_code == 202 and r.json()["lifecycle"] == "retiring"
    assert scaler.reload()[2] == frozenset({"cloud"})
    assert api.client.delete("/v1/providers/declared/nope", headers=api.admin).status_code == 404
    with store.read() as c:
        actions = [(e.action, e.target) for e in audit.list_audit(c, actor="root")]
    assert ("provider.add", "cloud") in actions and ("provider.remove", "cloud") in actions


def _problem_fields(body: dict[str, Any]) -> str:
    return " ".join(f"{p['field']}: {p['message']}" for p in body.get("problems", [])) + \
        body.get("message", "")


def test_hostile_provider_specs_are_refused_naming_the_field(store: Store) -> None:
    api = build(store)
    cases = [
        ({**AWS, "settings": {**AWS["settings"], "aws_secret_access_key": "abc"}},
         "aws_secret_access_key"),
        ({**AWS, "kind": "static"}, "kind"),
        ({**AWS, "name": "Bad Name!"}, "name"),
        ({**AWS, "max_nodes": -1}, "max_nodes"),
        ({"name": "r", "kind": "ssh", "settings": {
            "hosts": [{"name": "h", "address": "10.0.0.1"}], "known_hosts": "/k",
            "identity_file": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"}}, "identity_file"),
        ({"name": "x" * 5000, "kind": "aws"}, "name"),
    ]
    for body, field in cases:
        r = api.client.post("/v1/providers/declared", json=body, headers=api.admin)
        assert r.status_code == 422, (field, r.status_code, r.text[:300])
        assert field in _problem_fields(r.json()), (field, r.text[:300])
        assert "abc" not in r.text  # the secret is never echoed
    with store.read() as c:
        assert PP.declared_providers(c, include_removed=True) == []


# -- rm drains, then returns ------------------------------------------------------------------
def _rig_with_cloud(store: Store, provider: CloudProvider) -> tuple[Rig, Any, dict[str, str]]:
    rig = Rig(store)
    joined: dict[str, str] = {}
    with store.write() as c:
        PP.add_provider(c, ProviderSpec.model_validate(AWS), by="root", now=0.0)
    scaler = PP.autoscaler_from_pool(
        store, None, "c1", "https://corral.test", rig.clock.now,
        AutoscalerConfig(idle_timeout_s=600, join_timeout_s=300), build=lambda s: provider,
        every_s=5.0)
    scaler.joined = lambda ids: {i: joined[i] for i in ids if i in joined}
    rig.loop.autoscaler = scaler
    return rig, scaler, joined


def _join(rig: Rig, store: Store, provider: CloudProvider, joined: dict[str, str],
          iid: str) -> str:
    """The instance's agent registers: its node enters the pool (and the fake machines)."""
    offer = provider.live[iid].offer
    node = Node(f"cloud-{iid}", "cloud", "H100", 4, 81_920, 64_000, 262_144,
                price_per_gpu_hour=2.0, capacity_kind=offer.capacity_kind, region="r1",
                zone=offer.zone)
    provider.live[iid] = replace(provider.live[iid], state=CapacityState.JOINING)
    rig.world.nodes[node.id] = node
    with store.write() as c:
        cloud = [n for n in P.list_nodes(c) if n.provider == "cloud"]
        P.sync_nodes(c, [{"name": "local"}, {"name": "cloud"}], [*rig.nodes, *cloud, node])
    joined[iid] = node.id
    return node.id


def _holding(store: Store, wid: str) -> set[str]:
    with store.read() as c:
        return {h.node_id for h in W.holding_placements(c) if h.workload_id == wid}


def test_rm_drains_requeues_preemptible_work_and_waits_for_the_rest(store: Store) -> None:
    provider = CloudProvider()
    rig, _, joined = _rig_with_cloud(store, provider)
    fill = [rig.submit(gpus=4, preemptible=False) for _ in range(2)]  # the local nodes, busy
    rig.step(n=3)
    stays = rig.submit(gpus=2, preemptible=False, command=["long"])
    goes = rig.submit(gpus=2, preemptible=True)
    rig.step(n=12)  # they wait for capacity: one instance is rented for both
    (iid,) = provider.live
    node = _join(rig, store, provider, joined, iid)
    rig.step(n=12)
    assert _holding(store, stays) == {node} and _holding(store, goes) == {node}
    with store.write() as c:
        assert PP.retire_provider(c, "cloud", by="root", now=rig.clock.now()) is not None
    rig.step(n=20)
    with store.read() as c:
        assert next(n for n in P.list_nodes(c) if n.id == node).cordoned
    # the preemptible one left with the contract and waits to run elsewhere (no restart used)
    rec = rig.get(goes)
    assert rec.attempt == 1 and rec.restart_count == 0 and rec.state == "pending"
    assert ("running", "preempted", "ProviderRemoved") in rig.transitions(goes)
    assert rig.state(stays) == "running" and provider.terminated == []
    with store.read() as c:
        assert [d.lifecycle for d in PP.declared_providers(c)] == ["retiring"]
    # the other one ends on its own: only now is the instance returned and the provider gone
    rig.backend.finish(stays)
    rig.step(n=20)
    assert provider.terminated == [iid]
    with store.read() as c:
        assert PP.declared_providers(c) == []
        (gone,) = PP.declared_providers(c, include_removed=True)
    assert gone.lifecycle == PP.REMOVED and len(provider.live) == 1  # nothing rented after rm
    assert {w: rig.state(w) for w in fill} == dict.fromkeys(fill, "running")


# -- spot interruptions -------------------------------------------------------------------------
def test_a_spot_interruption_drains_requeues_and_replaces_capacity(store: Store) -> None:
    provider = CloudProvider(CapacityKind.SPOT)
    rig, scaler, joined = _rig_with_cloud(store, provider)
    [rig.submit(gpus=4, preemptible=False) for _ in range(2)]
    rig.step(n=3)
    gang = rig.submit(gpus=2, workers=2, preemptible=True)
    rig.step(n=12)
    (first,) = provider.live
    node = _join(rig, store, provider, joined, first)
    rig.step(n=8)
    assert rig.state(gang) == "running" and _holding(store, gang) == {node}
    deadline = rig.clock.now() + 120
    provider.warnings.append(Notice(first, deadline, "spot/instance-action: terminate"))
    rig.step(n=10)
    # the gang got its stop (the preemption contract) with the notice in its message
    stops = [s for s in rig.backend.stops if s.workload_id == gang]
    assert stops and stops[0].grace_seconds == 5.0 and "spot interruption" in stops[0].reason
    assert "taken back in" in stops[0].reason
    rec = rig.get(gang)
    assert ("running", "preempted", "SpotInterrupted") in rig.transitions(gang)
    assert rec.attempt == 1 and rec.restart_count == 0
    with store.read() as c:
        assert next(n for n in P.list_nodes(c) if n.id == node).cordoned
    # it waits for capacity: a replacement is rented in another zone (the notice's is avoided)
    assert scaler.state.interruptions[gang].places == (("cloud", "r1a"),)
    assert _audit(store, "autoscale.interrupted") == [node]
    second = next(i for i in provider.live if i != first)
    assert provider.live[second].offer.zone == "r1b"
    assert first in provider.terminated  # drained and idle: returned before its deadline
    other = _join(rig, store, provider, joined, second)
    rig.step(n=8)
    assert rig.state(gang) == "running" and _holding(store, gang) == {other}
    assert rig.get(gang).attempt == 1  # restarted once, from its checkpoint


def test_a_retiring_provider_that_cannot_be_listed_is_not_taken_for_empty(store: Store) -> None:
    from corral.providers.errors import ProviderError, ProviderReason

    class Unreachable(CloudProvider):
        def instances(self) -> list[Instance]:
            raise ProviderError(ProviderReason.TIMEOUT, "EC2 did not answer")

    provider = Unreachable()
    rig, _, _ = _rig_with_cloud(store, provider)
    with store.write() as c:
        PP.retire_provider(c, "cloud", by="root", now=rig.clock.now())
    rig.step(n=20)
    with store.read() as c:
        assert [d.lifecycle for d in PP.declared_providers(c)] == ["retiring"]
    assert _audit(store, "autoscale.provider_error")  # said, every pass it fails


def test_an_agent_registered_before_its_node_is_in_the_pool_is_not_rented_for_twice(
        store: Store) -> None:
    """The agent registers (the instance maps to its node) a moment before the control loop
    adds the node: until then it is capacity on its way (found by bench/autoscale.py)."""
    provider = CloudProvider()
    rig, _, joined = _rig_with_cloud(store, provider)
    [rig.submit(gpus=4, preemptible=False) for _ in range(2)]
    rig.step(n=3)
    waiting = rig.submit(gpus=4, preemptible=False)
    rig.step(n=12)
    (iid,) = provider.live
    joined[iid] = f"cloud-{iid}"  # registered; its node is not in the pool yet
    rig.step(n=30)
    assert list(provider.live) == [iid] and rig.state(waiting) == "pending"
    _join(rig, store, provider, joined, iid)
    rig.step(n=10)
    assert rig.state(waiting) == "running" and list(provider.live) == [iid]
