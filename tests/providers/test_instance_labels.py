"""Labels per instance type (issue 11): a provider of several instance types labels each
(`instance_labels`, merged over the provider's `labels`), and the labels reach the offers, the
agent's `--label` flags on the instance it starts, and the submission check. EC2 on moto in
server mode, through the control loop, as test_unplaceable_live does."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from tests.control.rig import Rig
from tests.providers.clocked_ec2 import ClockedAws, moto_image

from corral.autoscale.pool import AutoscalerConfig
from corral.backends.fake import FakeBackend
from corral.control import ManualClock, Submissions
from corral.control.autoscale import PoolAutoscaler
from corral.control.future_nodes import future_key, future_nodes
from corral.control.pool_providers import add_provider, renting_providers
from corral.core import reasons as R
from corral.core.model import CapacityKind, Node
from corral.providers.aws import AwsProvider
from corral.providers.bootstrap import parse_user_data
from corral.spec import SpecError
from corral.spec.pool import PoolSpec, ProviderSpec
from corral.store import Store
from corral.store import pool as P
from corral.store.database import sqlite_url

pytestmark = pytest.mark.slow  # 4 tests, 20 s (-n 2 whole run, 2026-12-05, load 8-32)

CONFIG = AutoscalerConfig(idle_timeout_s=600, join_timeout_s=600, replace_min_saving=None,
                          consolidate_min_age_s=None, cancel_unneeded_after_s=10)
#: one provider, two instance types: the L4 type is for inference, the A10G one for training
PROVIDER = {
    "name": "aws-mix", "kind": "aws", "labels": {"team": "vision"},
    "instance_labels": {"g6.xlarge": {"gpu-class": "inference"},
                        "g5.xlarge": {"gpu-class": "training", "team": "vision-train"}},
    "settings": {"region": "us-east-1", "image_id": "ami-0123abcd",
                 "instance_types": ["g5.xlarge", "g6.xlarge"], "zones": ["us-east-1a"],
                 "capacity_kinds": ["on-demand"]}}
TRAIN = {"team": "vision-train", "gpu-class": "training"}  # the type's own `team` wins
INFER = {"team": "vision", "gpu-class": "inference"}


def _spec(env: Mapping[str, str]) -> ProviderSpec:
    settings = {**PROVIDER["settings"], "endpoint_url": env["AWS_ENDPOINT_URL"]}
    return PoolSpec.model_validate({"providers": [{**PROVIDER, "settings": settings}]}).providers[0]


class Ec2(ClockedAws):
    """The provider the pool file declares (its settings as `renting_providers` builds them),
    with launch times on the rig's clock."""

    def __init__(self, spec: ProviderSpec, env: Mapping[str, str], clock: ManualClock) -> None:
        client = boto3.client("ec2", region_name="us-east-1",
                              endpoint_url=env["AWS_ENDPOINT_URL"])
        built = renting_providers(PoolSpec(providers=[spec]), "c1")[spec.name]
        assert isinstance(built, AwsProvider)
        super().__init__(spec.name, "c1", replace(built.settings, image_id=moto_image(client)),
                         client=client)
        self.clock, self.launched = clock, dict[str, float]()


@pytest.fixture
def rig(ec2_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Rig, Ec2]]:
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    rig = Rig(store)  # two H100 nodes, labelled with neither class
    spec = _spec(ec2_env)
    with store.write() as c:
        add_provider(c, spec, by="root", now=0.0)
    # the server's submission check counts what the providers could rent (control/server.py)
    rig.submissions = Submissions(store, rentable=future_nodes, rentable_key=future_key)
    ec2 = Ec2(spec, ec2_env, rig.clock)
    yield rig, ec2
    store.close()


def _autoscale(rig: Rig, ec2: Ec2, joined: dict[str, str], extra: list[Node]) -> None:
    rig.backend = FakeBackend([*rig.nodes, *extra], world=rig.world, check_capacity=True)
    rig.loop = rig.new_loop(rig.backend)
    rig.loop.autoscaler = PoolAutoscaler(
        rig.store, {ec2.name: ec2}, "c1", "https://corral.test", lambda n: "cjt_test", CONFIG,
        every_s=5.0, joined=lambda ids: {i: joined[i] for i in ids if i in joined})


def test_each_instance_types_offers_carry_its_labels_over_the_providers(
        rig: tuple[Rig, Ec2]) -> None:
    _, ec2 = rig
    labels = {o.instance_type: dict(o.labels) for o in ec2.offers()}
    assert labels == {"g5.xlarge": TRAIN, "g6.xlarge": INFER}


def test_the_submission_check_counts_each_types_labels(rig: tuple[Rig, Ec2]) -> None:
    r, _ = rig
    for selector in (TRAIN, INFER, {"team": "vision"}):
        r.submit(node_selector=selector)  # some type of the provider would carry it
    for selector in ({"gpu-class": "batch"}, {"team": "vision-train", "gpu-class": "inference"},
                     {"gpu-class": "training", "team": "vision"}):
        with pytest.raises(SpecError) as e:
            r.submit(node_selector=selector)  # no instance of any type would join with it
        assert [p for p, _ in e.value.problems] == ["node_selector"], str(e.value)
    # the A10G type is for training only: work for an A10G selecting inference is refused
    with pytest.raises(SpecError):
        r.submit(node_selector={"gpu-class": "inference"}, gpu_models=["A10G"])


def test_work_selecting_a_types_label_rents_that_type_its_agent_joins_with_them(
        rig: tuple[Rig, Ec2]) -> None:
    """g6.xlarge is the cheaper (0.8048 against 1.006 an hour): work selecting training gets
    the g5.xlarge all the same, and its agent starts with that type's labels; inference work
    gets a g6.xlarge with its own. Each runs on the node its instance joins as."""
    r, ec2 = rig
    train_node = Node("n-train", ec2.name, "A10G", 1, 22_888, 4_000, 16_384,
                      price_per_gpu_hour=1.006, capacity_kind=CapacityKind.ON_DEMAND,
                      region="us-east-1", zone="us-east-1a",
                      labels=tuple(sorted(TRAIN.items())))
    infer_node = replace(train_node, id="n-infer", gpu_model="L4", price_per_gpu_hour=0.8048,
                         labels=tuple(sorted(INFER.items())))
    joined: dict[str, str] = {}
    _autoscale(r, ec2, joined, [train_node, infer_node])
    train = r.submit(node_selector={"gpu-class": "training"})
    infer = r.submit(node_selector={"gpu-class": "inference"})
    r.step(8)
    assert r.get(train).reason_code == R.NO_NODE_SELECTED
    rented = {i.offer.instance_type: i for i in ec2.instances()}
    assert sorted(rented) == ["g5.xlarge", "g6.xlarge"]
    for itype, want in (("g5.xlarge", TRAIN), ("g6.xlarge", INFER)):
        attr = ec2._ec2.describe_instance_attribute(InstanceId=rented[itype].id,
                                                    Attribute="userData")
        boot = parse_user_data(base64.b64decode(attr["UserData"]["Value"]).decode())
        assert boot.labels == want, itype

    joined.update({rented["g5.xlarge"].id: "n-train", rented["g6.xlarge"].id: "n-infer"})
    with r.store.write() as c:  # their agents join carrying the labels they were started with
        P.sync_nodes(c, [{"name": "local"}, {"name": ec2.name, "capacity_kind": "on-demand"}],
                     [*r.nodes, train_node, infer_node])
    r.step(6)
    state = r.loop.live.snapshot(r.clock.now()).state
    placed = {w.id: {a.node_id for a in w.assignments} for w in state.workloads}
    assert (r.state(train), r.state(infer)) == ("running", "running")
    assert (placed[train], placed[infer]) == ({"n-train"}, {"n-infer"})


def test_an_ssh_shapes_labels_reach_its_hosts_and_what_may_join(tmp_path: Path) -> None:
    """ssh: the instance type is the host's shape (`ssh:<gpus>x<model>`); a host's own labels
    win over its shape's, which win over the provider's. No sshd is needed: the hosts the
    provider is built with carry the labels their agents' start lines give, and the submission
    check's shapes carry the same."""
    from corral.control.pool_providers import rentable_nodes
    from corral.providers.ssh import SshProvider

    host = {"address": "10.0.0.1", "gpus": 1, "gpu_model": "L4", "gpu_memory": "24GiB"}
    spec = PoolSpec.model_validate({"providers": [{
        "name": "rack1", "kind": "ssh", "labels": {"team": "vision", "site": "a"},
        "instance_labels": {"ssh:1xL4": {"gpu-class": "inference", "site": "b"}},
        "settings": {"identity_file": "/etc/corral/id", "known_hosts": "/etc/corral/kh",
                     "hosts": [{**host, "name": "h1"},
                               {**host, "name": "h2", "labels": {"site": "c"}},
                               {**host, "name": "h3", "gpus": 8, "gpu_model": "H100"}]}}]})
    want = {"h1": {"team": "vision", "site": "b", "gpu-class": "inference"},
            "h2": {"team": "vision", "site": "c", "gpu-class": "inference"},
            "h3": {"team": "vision", "site": "a"}}
    built = renting_providers(spec, "c1", "https://corral.test", lambda n: "cjt")["rack1"]
    assert isinstance(built, SshProvider)
    assert {h.name: dict(h.labels) for h in built.hosts} == want
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    try:
        with store.write() as c:
            add_provider(c, spec.providers[0], by="root", now=0.0)
        with store.read() as c:
            shapes = {n.id.rsplit("/", 1)[1]: dict(n.labels) for n in rentable_nodes(c)}
    finally:
        store.close()
    assert {h: {k: v for k, v in labels.items() if not k.startswith("corral.dev/")}
            for h, labels in shapes.items()} == want
