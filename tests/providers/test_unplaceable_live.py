"""Work the pool's nodes can never run, through the control loop, renting from EC2 on moto
(issue 11): a pool of spot nodes and spot offers plus one on-demand offer; work that may not be
preempted (CapacityUnavailable on spot nodes) gets the on-demand instance, runs there, and the
instance is returned once idle; work selecting a label no offer carries (NoNodeSelected) rents
nothing over many passes. Each is told on the workload as the autoscaler's event."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import boto3
import pydantic
import pytest
from tests.control.rig import Rig
from tests.providers.clocked_ec2 import ClockedAws, moto_image

from corral.autoscale.pool import AutoscalerConfig
from corral.backends.fake import FakeBackend, FakeWorld
from corral.control import ManualClock, Submissions
from corral.control.autoscale import PoolAutoscaler
from corral.control.pool_providers import renting_providers
from corral.control.waiting_notes import NO_OFFER_SERVES, RENTING
from corral.core import reasons as R
from corral.core.model import CapacityKind, Node, Queue
from corral.providers.aws import AwsSettings
from corral.providers.base import CapacityState, Instance, Offer
from corral.providers.bootstrap import parse_user_data
from corral.spec.pool import PoolSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url

pytestmark = pytest.mark.slow  # the control loop renting from EC2 on moto: ~41 s

CONFIG = AutoscalerConfig(idle_timeout_s=20, join_timeout_s=600, replace_min_saving=None,
                          consolidate_min_age_s=None, cancel_unneeded_after_s=10)
#: the pool's node: spot (rented before); the on-demand node the instance joins as
SPOT_NODE = Node("n0", "aws-spot", "L4", 1, 23_034, 4_000, 16_384, price_per_gpu_hour=0.3,
                 capacity_kind=CapacityKind.SPOT, region="us-east-1", zone="us-east-1a")
OD_NODE = Node("n1", "aws-od", "L4", 1, 23_034, 4_000, 16_384, price_per_gpu_hour=0.8,
               capacity_kind=CapacityKind.ON_DEMAND, region="us-east-1", zone="us-east-1a")
#: a node that carried team=vision, gone since the work was submitted
LABELLED = replace(OD_NODE, id="n2", provider="static", labels=(("team", "vision"),))
#: the node an instance of a provider with `labels: {team: vision}` joins as
VISION_NODE = replace(OD_NODE, id="n3", provider="aws-vision", labels=(("team", "vision"),))


class Ec2(ClockedAws):
    """EC2 on moto with launch times on the rig's clock (moto stamps the wall clock)."""

    def __init__(self, name: str, kinds: tuple[CapacityKind, ...], env: Mapping[str, str],
                 clock: ManualClock) -> None:
        client = boto3.client("ec2", region_name="us-east-1",
                              endpoint_url=env["AWS_ENDPOINT_URL"])
        super().__init__(name, "c1", AwsSettings(
            "us-east-1", moto_image(client), ("g6.xlarge",), zones=("us-east-1a", "us-east-1b"),
            capacity_kinds=kinds, endpoint_url=env["AWS_ENDPOINT_URL"]), client=client)
        self.clock, self.launched = clock, dict[str, float]()

    def offers(self) -> list[Offer]:
        # the on-demand provider offers one zone: one on-demand offer in the pool
        return [o for o in super().offers() if o.capacity_kind == CapacityKind.SPOT
                or o.zone == "us-east-1a"]


class Plane:
    def __init__(self, store: Store, env: Mapping[str, str]) -> None:
        # the rig's helpers (submit, state, ...) over this pool, not the rig's two H100 nodes
        self.rig = Rig.__new__(Rig)
        self.rig.store, self.rig.clock, self.rig.admission = store, ManualClock(), None
        self.rig.world = FakeWorld()
        self.rig.nodes = [SPOT_NODE, OD_NODE, LABELLED, VISION_NODE]
        with store.write() as c:
            P.sync_nodes(c, [{"name": "aws-spot", "capacity_kind": "spot"},
                             {"name": "static", "capacity_kind": "on-demand"}],
                         [SPOT_NODE, LABELLED])
            P.upsert_queue(c, Queue("q", quota_gpus=8))
        self.backend = FakeBackend(self.rig.nodes, world=self.rig.world, check_capacity=True)
        self.rig.backend = self.backend
        self.rig.loop = self.rig.new_loop(self.backend)
        # the server's submission check also sees what the providers could rent
        self.rig.submissions = Submissions(store, rentable=lambda conn: [OD_NODE])
        self.spot = Ec2("aws-spot", (CapacityKind.SPOT,), env, self.rig.clock)
        self.od = Ec2("aws-od", (CapacityKind.ON_DEMAND,), env, self.rig.clock)
        self.joined: dict[str, str] = {}
        self.rig.loop.autoscaler = PoolAutoscaler(
            store, {"aws-spot": self.spot, "aws-od": self.od}, "c1", "https://corral.test",
            lambda n: "cjt_test", CONFIG, every_s=5.0,
            joined=lambda ids: {i: self.joined[i] for i in ids if i in self.joined})

    def step(self, n: int) -> None:
        for _ in range(n):
            self.rig.loop.step()
            self.rig.clock.advance(1.0)

    def listed(self) -> list[Instance]:
        return [*self.spot.instances(), *self.od.instances()]

    def events(self, wid: str, reason: str) -> list[str]:
        with self.rig.store.read() as c:
            return [e.message for e in W.list_events(c, workload_id=wid) if e.reason == reason]


@pytest.fixture
def plane(ec2_env: dict[str, str], tmp_path: Path) -> Iterator[Plane]:
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    yield Plane(store, ec2_env)
    store.close()


def test_work_off_spot_rents_the_on_demand_offer_runs_and_it_is_returned(plane: Plane) -> None:
    rig = plane.rig
    with rig.store.write() as c:  # the labelled node is not part of this story
        P.sync_nodes(c, [], [SPOT_NODE])
    wid = rig.submit(gpus=1, preemptible=False)
    plane.step(8)
    assert rig.get(wid).reason_code == R.CAPACITY_UNAVAILABLE  # no node of a kind it may use
    (rented,) = plane.listed()
    assert (rented.provider, rented.offer.capacity_kind) == ("aws-od", CapacityKind.ON_DEMAND)
    told = plane.events(wid, RENTING)  # planned, then launching: each names the offer
    assert told[0].startswith("capacity planned now for it: 1 x g6.xlarge on-demand in "
                              "us-east-1a (aws-od")
    assert all("g6.xlarge on-demand in us-east-1a (aws-od" in t for t in told)

    plane.step(20)  # nothing more is rented while it boots, nor told again
    assert len(plane.listed()) == 1 and plane.events(wid, RENTING) == told
    plane.joined[rented.id] = "n1"  # its agent joins as the on-demand node
    with rig.store.write() as c:
        P.sync_nodes(c, [{"name": "aws-od", "capacity_kind": "on-demand"}], [SPOT_NODE, OD_NODE])
    plane.step(6)
    assert rig.state(wid) == "running"
    state = rig.loop.live.snapshot(rig.clock.now()).state
    assert {a.node_id for w in state.workloads if w.id == wid for a in w.assignments} == {"n1"}

    plane.backend.finish(wid)
    plane.step(60)  # idle past its timeout: drained, then returned
    assert [i.state for i in plane.listed()] == [CapacityState.TERMINATED]


def test_a_selector_no_offer_carries_rents_nothing(plane: Plane) -> None:
    rig = plane.rig
    wid = rig.submit(gpus=1, node_selector={"team": "vision"})  # n2 carries it now
    with rig.store.write() as c:  # n2 leaves the pool before the work runs
        P.set_cordoned(c, "n2", True)
        P.sync_nodes(c, [], [SPOT_NODE])
    plane.step(120)
    assert rig.get(wid).reason_code == R.NO_NODE_SELECTED
    assert plane.listed() == [], "no offer's instances carry team=vision: nothing rented"
    (told,) = plane.events(wid, NO_OFFER_SERVES)
    assert "no offer may serve it" in told and "would not carry team=vision" in told
    assert "select only labels a rented instance carries" in told


def test_a_selector_a_providers_labels_carry_rents_there_and_runs(
        plane: Plane, ec2_env: dict[str, str]) -> None:
    """A provider that declares `labels: {team: vision}`: its instance is rented for work
    selecting team=vision (the others' are not), its agent is started with `--label
    team=vision`, and the work runs on the node it joins as."""
    rig = plane.rig
    spec = PoolSpec.model_validate({"providers": [{
        "name": "aws-vision", "kind": "aws", "labels": {"team": "vision"}, "settings": {
            "region": "us-east-1", "image_id": "ami-0123abcd", "instance_types": ["g6.xlarge"],
            "zones": ["us-east-1a"], "capacity_kinds": ["on-demand"]}}]})
    vision = Ec2("aws-vision", (CapacityKind.ON_DEMAND,), ec2_env, rig.clock)
    vision.settings = replace(vision.settings, labels=spec.providers[0].labels)
    rig.loop.autoscaler = PoolAutoscaler(
        rig.store, {"aws-spot": plane.spot, "aws-od": plane.od, "aws-vision": vision}, "c1",
        "https://corral.test", lambda n: "cjt_test", CONFIG, every_s=5.0,
        joined=lambda ids: {i: plane.joined[i] for i in ids if i in plane.joined})
    wid = rig.submit(gpus=1, node_selector={"team": "vision"})  # n2 carries it now
    with rig.store.write() as c:  # n2 leaves the pool before the work runs
        P.set_cordoned(c, "n2", True)
        P.sync_nodes(c, [], [SPOT_NODE])
    plane.step(8)
    assert rig.get(wid).reason_code == R.NO_NODE_SELECTED
    assert plane.listed() == []  # the providers without the label rent nothing
    (rented,) = vision.instances()
    attr = vision._ec2.describe_instance_attribute(InstanceId=rented.id, Attribute="userData")
    boot = parse_user_data(base64.b64decode(attr["UserData"]["Value"]).decode())
    assert boot.labels == {"team": "vision"}
    assert plane.events(wid, RENTING)[0].startswith(
        "capacity planned now for it: 1 x g6.xlarge on-demand in us-east-1a (aws-vision")
    plane.joined[rented.id] = "n3"  # its agent joins carrying the label
    with rig.store.write() as c:
        P.sync_nodes(c, [{"name": "aws-vision", "capacity_kind": "on-demand"}],
                     [SPOT_NODE, VISION_NODE])
    plane.step(6)
    assert rig.state(wid) == "running"
    state = rig.loop.live.snapshot(rig.clock.now()).state
    assert {a.node_id for w in state.workloads if w.id == wid for a in w.assignments} == {"n3"}


@pytest.mark.parametrize(("said", "runs"), [({}, None), ({"runs_images": True}, True),
                                            ({"runs_images": False}, False)])
def test_the_pool_file_says_whether_an_aws_providers_instances_run_images(
        ec2_env: dict[str, str], said: dict[str, bool], runs: bool | None) -> None:
    settings = {"region": "us-east-1", "image_id": "ami-0123abcd", "instance_types": ["g6.xlarge"],
                "zones": ["us-east-1a"], "endpoint_url": ec2_env["AWS_ENDPOINT_URL"], **said}
    spec = PoolSpec.model_validate({"providers": [{"name": "aws", "kind": "aws",
                                                   "settings": settings}]})
    (aws,) = renting_providers(spec, "c1").values()
    assert {o.runs_images for o in aws.offers()} == {runs}
    with pytest.raises(pydantic.ValidationError, match=r"settings\.runs_images"):
        PoolSpec.model_validate({"providers": [{"name": "aws", "kind": "aws", "settings": {
            **settings, "runs_images": "podman"}}]})
