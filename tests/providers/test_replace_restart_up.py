"""A replacement survives `kill -9` of a real `corral up` (issue 11): agents on emulated EC2
instances (moto in server mode, tests/providers/machines.py boots a real `corral agent` per
instance from its user-data), the server killed between renting the cheaper node and draining
the dear one, started again on the same data dir. The new server resumes the replacement from
its audit record (corral.control.autoscale): the new node is used, the old one is drained and
returned, and every instance launched ends terminated. The same resume is tested faster below
`corral up` (test_replace_restart.py: every step of it on a manual clock); this test is the
whole stack: the processes, the agents' reconnection, EC2's API."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.providers.machines import Machines

from corral.providers.base import TAG_CLUSTER
from corral.sdk import Client
from corral.testing.corral_up import CorralServer

pytestmark = pytest.mark.slow  # 30 s at load 0.5, 66 s at load 12; test_replace_restart.py covers the
# resume itself in seconds

PRICES = {"g6.xlarge": 0.8048, "g6.12xlarge": 4.6016}  # the shipped catalog's list prices


def _pool(image: str, moto_url: str) -> str:
    return json.dumps({
        "providers": [{
            "name": "aws-moto", "kind": "aws", "capacity_kind": "on-demand",
            "region": "us-east-1", "max_nodes": 4,
            "settings": {"region": "us-east-1", "image_id": image,
                         "instance_types": sorted(PRICES), "zones": ["us-east-1a"],
                         "capacity_kinds": ["on-demand"], "on_demand_prices": PRICES,
                         "endpoint_url": moto_url}}],
        "queues": [{"name": "default", "quota_gpus": 16}],
        # replace at once (min age 0); an unneeded instance on its way would be returned after
        # 60 s, far longer than the restart: the replacement is kept aside by its resume
        "autoscaler": {"every": 1, "idle_timeout": 8, "join_timeout": 120, "backoff_base": 5,
                       "replace_min_age": 0, "replace_min_saving": 0.3,
                       "consolidate_min_age": None, "cancel_unneeded_after": 60}})


def _job(name: str, gpus: int, seconds: float) -> dict[str, Any]:
    return {"name": name, "queue": "default", "gpus": gpus, "cpu": 1, "memory": "1GiB",
            "preemptible": True,
            "command": [sys.executable, "-c", f"import time; time.sleep({seconds})"]}


def _until(what: str, check: Callable[[], Any], timeout: float, server: CorralServer) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    with server.client() as c:
        return _report(what, c, server)


def _report(what: str, c: Client, server: CorralServer) -> Any:
    seen = [(e.at, e.action, e.target, e.detail.get("reason", "")[:90])
            for e in c.audit(actor="autoscaler", limit=1000).items]
    work = [(w.name, w.state, w.restart_count, w.reason_code, w.reason_message[:120],
             [p.node_id for p in w.placements])
            for w in c.list().items]
    raise AssertionError(f"timed out waiting until {what}\nnodes: {[n.id for n in c.nodes()]}"
                         f"\nwork: {work}\naudit: {seen}\n{server.log()}")


def _live(ec2: Any) -> list[tuple[str, str]]:
    filters = [{"Name": "tag-key", "Values": [TAG_CLUSTER]},
               {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    return sorted((i["InstanceId"], i["InstanceType"]) for r in
                  ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"])


@pytest.fixture
def cloud(ec2_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[CorralServer, Any, Machines]]:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=ec2_env["AWS_ENDPOINT_URL"])
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    pool = tmp_path / "pool.yaml"
    pool.write_text(_pool(image, ec2_env["AWS_ENDPOINT_URL"]))
    server = CorralServer(tmp_path / "cp", pool=pool)
    server.extra_env = {**ec2_env, "CORRAL_ADVERTISE_URL": server.url}
    machines = Machines(ec2, tmp_path / "hosts")
    try:
        server.start("--backend", "agent", "--agent-timeout", "15")
        machines.start()
        yield server, ec2, machines
    finally:
        machines.stop()
        server.stop()


def _replacement(c: Client) -> dict[str, Any] | None:
    """The latest replacement record that names the instance rented for it."""
    rows = [e for e in c.audit(actor="autoscaler", limit=1000).items
            if e.action == "autoscale.replacement" and e.detail.get("new")]
    return rows[-1].detail if rows else None


def test_kill9_between_rent_and_drain_the_new_node_is_used_and_nothing_leaks(
        cloud: tuple[CorralServer, Any, Machines]) -> None:
    server, ec2, machines = cloud
    with server.client() as c:
        old, new, wid = _rent_then_kill(c, server, ec2)
    server.start("--backend", "agent", "--agent-timeout", "15")
    with server.client() as c:
        _resumed(c, server, ec2, machines, old, new, wid)


def _rent_then_kill(c: Client, server: CorralServer, ec2: Any) -> tuple[str, str, str]:
    # a 3-GPU job and a 1-GPU one share a g6.12xlarge (4 x L4, 4.60/h); when the first ends,
    # the second alone fits a g6.xlarge (1 x L4, 0.80/h): the dear node is replaced
    (first,) = c.submit(_job("three", 3, 4)).workloads
    (second,) = c.submit(_job("one", 1, 600)).workloads
    wid = second.id
    _until("both run on one node", lambda: c.get(first.id).state == "succeeded"
           and c.get(wid).state == "running", 90, server)
    (old,) = {p.node_id for p in c.get(wid).placements}
    assert dict(_live(ec2))[old] == "g6.12xlarge"

    rec = _until("the replacement is rented", lambda: _replacement(c), 60, server)
    assert rec["old"] == old
    new = rec["new"]
    server.kill9()  # before the drain: the old node still runs the work
    assert old in dict(_live(ec2)) and new in dict(_live(ec2))
    return old, new, second.id


def _resumed(c: Client, server: CorralServer, ec2: Any, machines: Machines, old: str, new: str,
             wid: str) -> None:
    _until("the work runs on the new node", lambda: c.get(wid).state == "running"
           and {p.node_id for p in c.get(wid).placements} == {new}, 90, server)
    w = c.get(wid)
    assert w.restart_count == 0  # moved with the preemption contract, no restart spent
    _until("the old node is returned", lambda: old not in dict(_live(ec2)), 60, server)
    _until("the replacement is recorded as ended", lambda: "autoscale.replacement_ended" in [
        e.action for e in c.audit(actor="autoscaler", limit=1000).items], 30, server)

    c.cancel(wid)
    _until("every instance is returned", lambda: not _live(ec2), 60, server)
    launched = {i for e in c.audit(actor="autoscaler", limit=1000).items
                if e.action == "autoscale.launch" for i in e.target.split(",")}
    terminated = {e.target for e in c.audit(actor="autoscaler", limit=1000).items
                  if e.action == "autoscale.terminate"}
    assert launched == {old, new} and terminated == launched  # nothing leaked, nothing extra
    assert set(machines.procs) == launched and not machines.errors
