"""The pool autoscaler renting from EC2 (moto in server mode): waiting work -> a launch with the
agent's user-data -> the emulated instance "boots" (Ec2Booter runs its join step) -> idle ->
drained -> terminated. Every instance launched is joined or terminated: none leaks."""

from __future__ import annotations

from dataclasses import replace

import boto3

from corral.autoscale.pool import AutoscalerConfig, NodeUse, PoolView, Waiting, decide
from corral.autoscale.state import AutoscalerState
from corral.core import reasons as R
from corral.core.model import CapacityKind, WorkerResources, Workload
from corral.providers.aws import AwsProvider, AwsSettings
from corral.providers.base import CapacityState, required_tags
from corral.providers.bootstrap import agent_user_data
from corral.testing.ec2 import Ec2Booter

CONFIG = AutoscalerConfig(idle_timeout_s=600, join_timeout_s=900)


def _provider(env: dict[str, str], client) -> AwsProvider:
    image = client.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    return AwsProvider("aws-use1", "c1", AwsSettings(
        "us-east-1", image, ("g6.xlarge", "p5.48xlarge"), zones=("us-east-1a",),
        endpoint_url=env["AWS_ENDPOINT_URL"]))


def test_rent_join_idle_return_nothing_leaks(ec2_env) -> None:
    client = boto3.client("ec2", region_name="us-east-1", endpoint_url=ec2_env["AWS_ENDPOINT_URL"])
    aws = _provider(ec2_env, client)
    joined: dict[str, str] = {}
    booter = Ec2Booter(client, "c1", lambda iid, boot: joined.setdefault(iid, f"node-{iid}"))
    job = Workload("j1", "q", WorkerResources(gpus=1, cpu_milli=2000, memory_mib=8192),
                   gpu_models=("L4",), capacity_kinds=(CapacityKind.ON_DEMAND,))
    state, now = AutoscalerState(), 0.0

    def view(waiting: list[Waiting], use: dict[str, NodeUse]) -> PoolView:
        instances = [replace(i, state=CapacityState.READY, node_id=joined[i.id])
                     if i.id in joined and i.state == CapacityState.JOINING else i
                     for i in aws.instances()]
        return PoolView(waiting, aws.offers(), instances, use)

    # 1. work waits for capacity: one g6.xlarge on-demand is rented, with the agent's user-data
    d = decide(view([Waiting(job, R.INSUFFICIENT_CAPACITY)], {}), state, CONFIG, now)
    (launch,) = d.launches
    assert (launch.offer.instance_type, launch.count) == ("g6.xlarge", 1)
    launched = aws.launch(launch.offer, 1, user_data=agent_user_data(
        "https://corral.test", "cjt_x", {"provider": "aws-use1"}),
        tags=required_tags("c1", "req-1", "aws-use1"))
    # 2. a second decision while it boots rents nothing more
    state = d.state
    d = decide(view([Waiting(job, R.INSUFFICIENT_CAPACITY)], {}), state, CONFIG, now + 30)
    assert d.launches == ()
    # 3. the instance boots: its join step runs from its user-data
    assert booter.boot_pending() == [launched[0].id]
    node = joined[launched[0].id]
    # 4. the work ran and left; the node is idle past the timeout: drained, then terminated
    d = decide(view([], {node: NodeUse(0, 0, 100.0)}), state, CONFIG, 800.0)
    assert [x.node_id for x in d.drains] == [node]
    draining = [replace(i, state=CapacityState.DRAINING, node_id=node) for i in aws.instances()]
    d = decide(PoolView([], aws.offers(), draining, {node: NodeUse(0, 0, 100.0)}), state,
               CONFIG, 830.0)
    aws.terminate([t.instance_id for t in d.terminations])
    listed = aws.instances()
    assert [i.state for i in listed] == [CapacityState.TERMINATED]
    assert set(joined) == {i.id for i in listed}  # launched == joined == terminated
