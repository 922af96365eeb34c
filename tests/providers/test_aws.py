"""The aws provider against moto in server mode: a real EC2 HTTP API, fake credentials."""

from __future__ import annotations

import base64
from decimal import Decimal

import boto3
import botocore.exceptions
import pytest

from corral.core.model import CapacityKind
from corral.providers.aws import TAG_LAUNCH, AwsProvider, AwsSettings, _classify
from corral.providers.base import (
    TAG_CLUSTER,
    TAG_INSTANCE,
    TAG_PROVIDER,
    CapacityState,
    Provider,
    required_tags,
)
from corral.providers.bootstrap import agent_user_data, parse_user_data
from corral.providers.errors import ProviderError, ProviderReason
from corral.testing.ec2 import Ec2Booter

pytestmark = pytest.mark.slow  # moto: 20 tests, 122 s (-n 2 whole run, 2026-12-05, load 8-32)

TYPES = ("p5.48xlarge", "g6.xlarge", "m5.large")


def ec2(env: dict[str, str]):
    return boto3.client("ec2", region_name=env["AWS_DEFAULT_REGION"],
                        endpoint_url=env["AWS_ENDPOINT_URL"])


_IMAGE: list[str] = []


def image(env: dict[str, str]) -> str:
    """One of moto's stock AMIs (listing them is slow: once per run)."""
    if not _IMAGE:
        _IMAGE.append(ec2(env).describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"])
    return _IMAGE[0]


def provider(env: dict[str, str], cluster: str = "c1", **kw) -> AwsProvider:
    settings = AwsSettings("us-east-1", image(env), TYPES, zones=("us-east-1a", "us-east-1b"),
                           endpoint_url=env["AWS_ENDPOINT_URL"], **kw)
    return AwsProvider("aws-use1", cluster, settings)


def user_data() -> str:
    return agent_user_data("https://corral.example:8443", "cjt_secret",
                           {"provider": "aws-use1", "capacity_kind": "spot"})


def test_it_is_a_provider(ec2_env) -> None:
    assert isinstance(provider(ec2_env), Provider)


def test_offers_price_on_demand_from_the_catalog_and_spot_from_the_api(ec2_env) -> None:
    offers = provider(ec2_env).offers()
    got = {(o.instance_type, str(o.capacity_kind), o.zone): o for o in offers}
    assert {k[0] for k in got} == {"p5.48xlarge", "g6.xlarge"}  # m5.large has no GPU
    assert {k[2] for k in got} == {"us-east-1a", "us-east-1b"}
    p5 = got[("p5.48xlarge", "on-demand", "us-east-1a")]
    assert (p5.gpu_model, p5.gpus, p5.gpu_memory_mib, p5.cpu_milli) == ("H100", 8, 81920, 192_000)
    assert p5.price_per_hour == Decimal("98.32") and p5.price_per_gpu_hour == Decimal("12.29")
    assert p5.source == "catalog:catalog.json@2024-01-01"
    spot = got[("p5.48xlarge", "spot", "us-east-1b")]
    assert spot.source == "api:ec2.DescribeSpotPriceHistory" and spot.as_of


def test_settings_override_the_catalog_price_and_kinds(ec2_env) -> None:
    p = provider(ec2_env, capacity_kinds=(CapacityKind.ON_DEMAND,),
                 on_demand_prices={"g6.xlarge": Decimal("0.50")})
    offers = [o for o in p.offers() if o.instance_type == "g6.xlarge"]
    assert {o.capacity_kind for o in offers} == {CapacityKind.ON_DEMAND}
    assert {o.price_per_hour for o in offers} == {Decimal("0.50")}
    assert offers[0].source == "settings:providers.aws-use1.on_demand_prices"


@pytest.mark.parametrize("kind, lifecycle", [(CapacityKind.ON_DEMAND, None),
                                             (CapacityKind.SPOT, "spot")])
def test_launch_tags_user_data_zone_and_market(ec2_env, kind, lifecycle) -> None:
    p = provider(ec2_env)
    offer = next(o for o in p.offers() if o.instance_type == "g6.xlarge"
                 and o.capacity_kind == kind and o.zone == "us-east-1b")
    launched = p.launch(offer, 2, user_data=user_data(),
                        tags=required_tags("c1", "req-1", "aws-use1"))
    assert len(launched) == 2 and all(i.offer == offer for i in launched)
    assert {i.state for i in launched} == {CapacityState.PROVISIONING}
    client = ec2(ec2_env)
    for i in client.describe_instances(InstanceIds=[x.id for x in launched])["Reservations"][0][
            "Instances"]:
        tags = {t["Key"]: t["Value"] for t in i["Tags"]}
        assert tags[TAG_CLUSTER] == "c1" and tags[TAG_PROVIDER] == "aws-use1"
        assert tags[TAG_INSTANCE] == i["InstanceId"] and tags[TAG_LAUNCH] == "req-1"
        assert i["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert i.get("InstanceLifecycle") == lifecycle
        data = client.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
        boot = parse_user_data(base64.b64decode(data["UserData"]["Value"]).decode())
        assert (boot.server, boot.join_token) == ("https://corral.example:8443", "cjt_secret")
        assert boot.args["--provider"] == "aws-use1" and boot.args["--instance-id"] == "$INSTANCE_ID"


def test_instances_are_listed_by_tag_and_terminate_is_idempotent(ec2_env) -> None:
    mine, other = provider(ec2_env, "c1"), provider(ec2_env, "c2")
    offer = next(o for o in mine.offers() if o.instance_type == "g6.xlarge")
    a = mine.launch(offer, 1, user_data=user_data(), tags={})
    other.launch(next(o for o in other.offers() if o.instance_type == "g6.xlarge"), 1,
                 user_data=user_data(), tags={})
    listed = mine.instances()
    assert [i.id for i in listed] == [a[0].id]
    assert listed[0].offer.instance_type == "g6.xlarge"
    mine.terminate([a[0].id, a[0].id])
    mine.terminate([a[0].id, "i-0123456789abcdef0"])  # one gone, one never existed
    assert {i.state for i in mine.instances()} == {CapacityState.TERMINATED}
    assert len(other.instances()) == 1


def test_a_fresh_provider_lists_instances_before_it_read_offers(ec2_env) -> None:
    p = provider(ec2_env)
    p.launch(next(o for o in p.offers() if o.instance_type == "p5.48xlarge"), 1,
             user_data=user_data(), tags={})
    again = provider(ec2_env).instances()  # a restarted control plane
    assert again[0].offer.gpu_model == "H100" and again[0].offer.price_per_hour == Decimal("98.32")


def test_the_booter_joins_each_running_instance_once(ec2_env) -> None:
    p = provider(ec2_env)
    offer = next(o for o in p.offers() if o.instance_type == "g6.xlarge")
    launched = p.launch(offer, 3, user_data=user_data(), tags={})
    joined: list[tuple[str, str]] = []

    def join(iid: str, boot) -> str:
        joined.append((iid, boot.join_token))
        return f"node-{iid}"

    booter = Ec2Booter(ec2(ec2_env), "c1", join)
    assert booter.boot_pending() == sorted(i.id for i in launched)
    assert booter.boot_pending() == []
    assert sorted(joined) == sorted((i.id, "cjt_secret") for i in launched)


def test_a_refused_launch_is_a_provider_error(ec2_env) -> None:
    p = provider(ec2_env)
    offer = next(o for o in p.offers() if o.instance_type == "g6.xlarge")
    with pytest.raises(ProviderError) as e:
        p.launch(offer, 0, user_data="", tags={})
    assert e.value.reason_code == ProviderReason.INVALID_REQUEST


def _client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "m"}}, "RunInstances")


@pytest.mark.parametrize("error, reason, retry", [
    (_client_error("InsufficientInstanceCapacity"), "NoCapacity", None),
    (_client_error("SpotMaxPriceTooLow"), "NoCapacity", None),
    (_client_error("VcpuLimitExceeded"), "QuotaExceeded", None),
    (_client_error("MaxSpotInstanceCountExceeded"), "QuotaExceeded", None),
    (_client_error("UnauthorizedOperation"), "AuthFailed", None),
    (_client_error("AuthFailure"), "AuthFailed", None),
    (_client_error("RequestLimitExceeded"), "Timeout", 30.0),
    (_client_error("InvalidAMIID.NotFound"), "InvalidRequest", None),
    (botocore.exceptions.NoCredentialsError(), "AuthFailed", None),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), "Timeout", None),
])
def test_ec2_errors_map_to_provider_reasons(error, reason, retry) -> None:
    e = _classify("RunInstances", error)
    assert (e.reason_code, e.retry_after_s) == (reason, retry)


def test_spot_notices_come_from_the_spot_requests_status(ec2_env) -> None:
    """moto: a fulfilled spot instance gives no notice. EC2's marked-for-termination (the
    two-minute warning) and instance-terminated-* answers, which moto cannot produce, through
    botocore's Stubber on the same code path."""
    import datetime as dt

    from botocore.stub import Stubber

    p = provider(ec2_env)
    offer = next(o for o in p.offers() if o.instance_type == "g6.xlarge"
                 and o.capacity_kind == CapacityKind.SPOT)
    (spot,) = p.launch(offer, 1, user_data=user_data(), tags={})
    assert [i.id for i in p.instances()] == [spot.id]
    assert p.notices() == []  # running, not warned
    stub = Stubber(p._ec2)
    at = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    stub.add_response("describe_spot_instance_requests", {"SpotInstanceRequests": [
        {"InstanceId": spot.id, "Status": {"Code": "marked-for-termination", "UpdateTime": at}},
        {"InstanceId": "i-0fffffffffffffff0", "Status": {"Code": "instance-terminated-no-capacity",
                                                          "UpdateTime": at}},
        {"InstanceId": "i-0eeeeeeeeeeeeeee0", "Status": {"Code": "fulfilled", "UpdateTime": at}},
    ]}, {"Filters": [{"Name": "instance-id", "Values": [spot.id]}]})
    with stub:
        notices = p.notices()
    # notices come sorted by instance id; moto's ids are random hex, so the launched one may sort
    # either side of the stubbed "i-0fff..." (it sorted first about once in 16 runs)
    assert [(n.instance_id, n.deadline, n.reason) for n in notices] == sorted([
        ("i-0fffffffffffffff0", at.timestamp(), "ec2 spot request instance-terminated-no-capacity"),
        (spot.id, at.timestamp() + 120, "ec2 spot request marked-for-termination")])
