"""The aws provider: EC2 through boto3.

- **offers**: the configured GPU instance types (GPUs, GPU memory, vCPUs and RAM from
  DescribeInstanceTypes), in each allowed zone where DescribeInstanceTypeOfferings lists them;
  on-demand at the shipped catalog's dated list price (or the pool file's override); spot at the
  latest price of DescribeSpotPriceHistory for that type and zone (``api:ec2.DescribeSpotPriceHistory``).
- **launch**: RunInstances, spot through ``InstanceMarketOptions`` (one-time, terminate on
  interruption), user-data that starts the agent, and tags on the instance and its volumes:
  ``corral:cluster``, ``corral:provider``, ``corral:launch`` (the caller's request id, also the
  ClientToken, so a launch retried after a crash returns the same instances instead of renting
  twice) and ``corral:instance`` (the EC2 instance id, tagged once it is known).
- **instances**: DescribeInstances filtered by the cluster and provider tags (paginated), their
  EC2 state mapped onto the capacity lifecycle; a spot interruption reads as
  ``terminated: spot interruption``.
- **terminate**: TerminateInstances; ids already gone are not errors.
- **notices**: spot interruptions EC2 has announced, from DescribeSpotInstanceRequests of the
  spot instances it listed: status ``marked-for-termination`` is the two-minute warning (the
  host's metadata ``spot/instance-action``), deadline = its UpdateTime + 120 s; a request whose
  instance EC2 already took back (``instance-terminated-*``) is a notice due now.

Credentials come from boto3's usual chain (environment, profile, instance role); corral never
stores them. EC2 errors become `ProviderError` codes (`_classify`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from corral.core.model import CapacityKind
from corral.providers.base import (
    TAG_CLUSTER,
    TAG_INSTANCE,
    TAG_PROVIDER,
    CapacityState,
    Instance,
    Notice,
    Offer,
)
from corral.providers.catalog import FILE, lookup
from corral.providers.errors import ProviderError, ProviderReason

__all__ = ["AwsProvider", "AwsSettings"]

TAG_LAUNCH = "corral:launch"

_STATES = {
    "pending": CapacityState.PROVISIONING,
    "running": CapacityState.JOINING,  # READY once its agent joined: the control plane knows
    "shutting-down": CapacityState.TERMINATING,
    "stopping": CapacityState.TERMINATING,
    "stopped": CapacityState.TERMINATED,
    "terminated": CapacityState.TERMINATED,
}
_NO_CAPACITY = {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
                "SpotMaxPriceTooLow", "InsufficientFreeAddressesInSubnet", "Unsupported"}
_QUOTA = {"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded",
          "ResourceLimitExceeded"}
_AUTH = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
         "ExpiredToken", "OptInRequired", "Blocked"}
_THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
#: spot request status codes that mean the instance is being (or was) taken back
_WARNED = "marked-for-termination"
_TAKEN = ("instance-terminated-by-price", "instance-terminated-no-capacity",
          "instance-terminated-capacity-oversubscribed", "instance-terminated-launch-group-constraint")
SPOT_NOTICE_S = 120.0  # EC2's interruption notice


@dataclass(frozen=True)
class AwsSettings:
    region: str
    image_id: str
    instance_types: tuple[str, ...]
    zones: tuple[str, ...] = ()  # () = every zone of the region
    capacity_kinds: tuple[CapacityKind, ...] = (CapacityKind.ON_DEMAND, CapacityKind.SPOT)
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    iam_instance_profile: str | None = None
    #: per instance-hour; overrides the catalog's list price (e.g. a negotiated discount)
    on_demand_prices: Mapping[str, Decimal] = field(default_factory=dict)
    endpoint_url: str | None = None  # an EC2-compatible endpoint (moto in tests)
    #: whether the AMI has podman, so instances run `image:` work (None: not said, and the
    #: autoscaler rents nothing here for image work: `Offer.runs_images`)
    runs_images: bool | None = None
    #: labels its instances join with (the pool file's provider `labels`): `Offer.labels`
    labels: Mapping[str, str] = field(default_factory=dict)
    #: labels of one instance type's instances, over `labels` (the pool file's
    #: `instance_labels`: e.g. gpu-class: inference on the L4 types only)
    instance_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def labels_of(self, instance_type: str) -> tuple[tuple[str, str], ...]:
        """`Offer.labels` of an instance type: the provider's, the type's own over them."""
        return tuple(sorted({**self.labels,
                             **self.instance_labels.get(instance_type, {})}.items()))


class AwsProvider:
    kind = "aws"

    def __init__(self, name: str, cluster_id: str, settings: AwsSettings,
                 client: Any | None = None) -> None:
        self.name, self.cluster_id, self.settings = name, cluster_id, settings
        self._ec2 = client or boto3.session.Session(region_name=settings.region).client(
            "ec2", endpoint_url=settings.endpoint_url,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))
        self._offers: dict[tuple[str, CapacityKind, str], Offer] = {}
        self._spot: list[str] = []  # live spot instances at the last `instances()`

    # -- offers -----------------------------------------------------------------------------
    def offers(self) -> list[Offer]:
        types = self._call("DescribeInstanceTypes", self._ec2.describe_instance_types,
                           InstanceTypes=list(self.settings.instance_types))["InstanceTypes"]
        where = self._zones_offering()
        spot = self._spot_prices() if CapacityKind.SPOT in self.settings.capacity_kinds else {}
        out: list[Offer] = []
        for t in sorted(types, key=lambda t: t["InstanceType"]):
            gpus = t.get("GpuInfo", {}).get("Gpus", [])
            if not gpus:
                continue
            for zone in where.get(t["InstanceType"], ()):
                out += self._offers_of(t, gpus[0], zone, spot)
        self._offers = {(o.instance_type, o.capacity_kind, o.zone): o for o in out}
        return out

    def _offers_of(self, t: Mapping[str, Any], gpu: Mapping[str, Any], zone: str,
                   spot: Mapping[tuple[str, str], tuple[Decimal, str]]) -> list[Offer]:
        itype = t["InstanceType"]
        base = dict(provider=self.name, instance_type=itype, gpu_model=str(gpu["Name"]),
                    gpus=int(gpu["Count"]), gpu_memory_mib=int(gpu["MemoryInfo"]["SizeInMiB"]),
                    cpu_milli=int(t["VCpuInfo"]["DefaultVCpus"]) * 1000,
                    memory_mib=int(t["MemoryInfo"]["SizeInMiB"]), region=self.settings.region,
                    zone=zone, runs_images=self.settings.runs_images,
                    labels=self.settings.labels_of(itype))
        out = []
        if CapacityKind.ON_DEMAND in self.settings.capacity_kinds:
            price = self._on_demand(itype)
            if price is not None:
                out.append(Offer(**base, price_per_hour=price[0],
                                 capacity_kind=CapacityKind.ON_DEMAND, source=price[1],
                                 as_of=price[2]))
        if (itype, zone) in spot:
            amount, when = spot[(itype, zone)]
            out.append(Offer(**base, price_per_hour=amount, capacity_kind=CapacityKind.SPOT,
                             source="api:ec2.DescribeSpotPriceHistory", as_of=when))
        return out

    def _on_demand(self, itype: str) -> tuple[Decimal, str, str] | None:
        if itype in self.settings.on_demand_prices:
            return (Decimal(self.settings.on_demand_prices[itype]),
                    f"settings:providers.{self.name}.on_demand_prices", "")
        entry = lookup("aws", itype)
        if entry is None:
            return None  # no price known: no on-demand offer rather than a made-up one
        return entry.on_demand_per_hour, f"catalog:{FILE}@{entry.as_of}", entry.as_of

    def _zones_offering(self) -> dict[str, list[str]]:
        pages = self._pages("DescribeInstanceTypeOfferings", "describe_instance_type_offerings",
                            "InstanceTypeOfferings", LocationType="availability-zone",
                            Filters=[{"Name": "instance-type",
                                      "Values": list(self.settings.instance_types)}])
        allowed = set(self.settings.zones)
        where: dict[str, list[str]] = {}
        for o in pages:
            if not allowed or o["Location"] in allowed:
                where.setdefault(o["InstanceType"], []).append(o["Location"])
        return {k: sorted(set(v)) for k, v in where.items()}

    def _spot_prices(self) -> dict[tuple[str, str], tuple[Decimal, str]]:
        """The latest spot price per (instance type, zone)."""
        rows = self._pages("DescribeSpotPriceHistory", "describe_spot_price_history",
                           "SpotPriceHistory", InstanceTypes=list(self.settings.instance_types),
                           ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                           StartTime=dt.datetime.now(dt.UTC))
        latest: dict[tuple[str, str], tuple[dt.datetime, Decimal]] = {}
        for r in rows:
            key = (r["InstanceType"], r["AvailabilityZone"])
            if key not in latest or r["Timestamp"] > latest[key][0]:
                latest[key] = (r["Timestamp"], Decimal(r["SpotPrice"]))
        return {k: (price, when.date().isoformat()) for k, (when, price) in latest.items()}

    # -- launch, list, terminate ------------------------------------------------------------
    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        if offer.provider != self.name or count < 1:
            raise ProviderError(ProviderReason.INVALID_REQUEST,
                                f"launch: offer of provider {offer.provider!r} and count {count}: "
                                f"give an offer of {self.name!r} and a count >= 1")
        request = tags.get(TAG_INSTANCE) or tags.get(TAG_LAUNCH) or ""
        mine = {**tags, TAG_CLUSTER: self.cluster_id, TAG_PROVIDER: self.name,
                TAG_LAUNCH: request}
        mine.pop(TAG_INSTANCE, None)
        tag_list = [{"Key": k, "Value": v} for k, v in sorted(mine.items())]
        kwargs: dict[str, Any] = dict(
            ImageId=self.settings.image_id, InstanceType=offer.instance_type, MinCount=count,
            MaxCount=count, UserData=user_data, Placement={"AvailabilityZone": offer.zone},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list},
                               {"ResourceType": "volume", "Tags": tag_list}])
        if request:
            kwargs["ClientToken"] = f"{request}-{count}"[:64]
        if offer.capacity_kind == CapacityKind.SPOT:
            kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        if self.settings.subnet_id:
            kwargs["SubnetId"] = self.settings.subnet_id
        if self.settings.security_group_ids:
            kwargs["SecurityGroupIds"] = list(self.settings.security_group_ids)
        if self.settings.iam_instance_profile:
            kwargs["IamInstanceProfile"] = {"Name": self.settings.iam_instance_profile}
        reply = self._call("RunInstances", self._ec2.run_instances, **kwargs)
        ids = [i["InstanceId"] for i in reply["Instances"]]
        for iid in ids:  # its own id as a tag: reconciliation reads one place
            self._call("CreateTags", self._ec2.create_tags, Resources=[iid],
                       Tags=[{"Key": TAG_INSTANCE, "Value": iid}])
        return [self._instance(i, offer) for i in reply["Instances"]]

    def terminate(self, instance_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return
        try:
            self._ec2.terminate_instances(InstanceIds=ids)
        except botocore.exceptions.ClientError as e:
            if _code(e).startswith("InvalidInstanceID"):  # some already gone: one at a time
                for iid in ids:
                    self._terminate_one(iid)
                return
            raise _classify("TerminateInstances", e) from e
        except botocore.exceptions.BotoCoreError as e:
            raise _classify("TerminateInstances", e) from e

    def _terminate_one(self, iid: str) -> None:
        try:
            self._ec2.terminate_instances(InstanceIds=[iid])
        except botocore.exceptions.ClientError as e:
            if not _code(e).startswith("InvalidInstanceID"):
                raise _classify("TerminateInstances", e) from e

    def instances(self) -> list[Instance]:
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster_id]},
                   {"Name": f"tag:{TAG_PROVIDER}", "Values": [self.name]}]
        out = []
        for r in self._pages("DescribeInstances", "describe_instances", "Reservations",
                             Filters=filters):
            out += [self._instance(i, None) for i in r["Instances"]]
        self._spot = sorted(i.id for i in out if i.offer.capacity_kind == CapacityKind.SPOT
                            and i.state != CapacityState.TERMINATED)
        return sorted(out, key=lambda i: i.id)

    def notices(self) -> list[Notice]:
        """Interruptions announced for the spot instances of the last `instances()` call."""
        if not self._spot:
            return []
        out = []
        for r in self._pages("DescribeSpotInstanceRequests", "describe_spot_instance_requests",
                             "SpotInstanceRequests",
                             Filters=[{"Name": "instance-id", "Values": self._spot[:200]}]):
            status = r.get("Status", {})
            code, iid = status.get("Code", ""), r.get("InstanceId")
            if iid is None or (code != _WARNED and code not in _TAKEN):
                continue
            when = status.get("UpdateTime")
            at = when.timestamp() if isinstance(when, dt.datetime) else 0.0
            deadline = at + SPOT_NOTICE_S if code == _WARNED else at
            out.append(Notice(iid, deadline, f"ec2 spot request {code}"))
        return sorted(out, key=lambda n: n.instance_id)

    def _instance(self, i: Mapping[str, Any], offer: Offer | None) -> Instance:
        state = _STATES.get(i["State"]["Name"], CapacityState.PROVISIONING)
        kind = CapacityKind.SPOT if i.get("InstanceLifecycle") == "spot" else CapacityKind.ON_DEMAND
        zone = i.get("Placement", {}).get("AvailabilityZone", "")
        if offer is None:
            offer = self._offers.get((i["InstanceType"], kind, zone)) or self._unpriced(i, kind, zone)
        reason = str(i.get("StateReason", {}).get("Message", "") or i["State"]["Name"])
        if i.get("StateReason", {}).get("Code") == "Server.SpotInstanceTermination":
            reason = "spot interruption"
        launched = i.get("LaunchTime")
        at = launched.timestamp() if isinstance(launched, dt.datetime) else 0.0
        return Instance(i["InstanceId"], self.name, offer, state, reason, at, None)

    def _unpriced(self, i: Mapping[str, Any], kind: CapacityKind, zone: str) -> Offer:
        """An offer for an instance listed before `offers()` ran (after a restart): the catalog's
        hardware and on-demand price where known, else zeros, so a stray is still reported."""
        entry = lookup("aws", i["InstanceType"])
        if entry is not None:
            return entry.offer(zone, provider=self.name, kind=kind)
        return Offer(self.name, i["InstanceType"], "unknown", 0, 0, 0, 0, Decimal(0), kind,
                     self.settings.region, zone, "unknown", "")

    # -- calls ------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise _classify(what, e) from e

    def _pages(self, what: str, method: str, key: str, **kwargs: Any) -> Iterator[Any]:
        try:
            for page in self._ec2.get_paginator(method).paginate(**kwargs):
                yield from page.get(key, [])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise _classify(what, e) from e


def _code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _classify(what: str, e: Exception) -> ProviderError:
    """An EC2 failure as a provider reason: what the autoscaler should do next depends on it."""
    if isinstance(e, botocore.exceptions.NoCredentialsError):
        return ProviderError(ProviderReason.AUTH_FAILED, f"{what}: no AWS credentials found "
                             "(set them in the server's environment or give it an instance role)")
    if isinstance(e, (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError,
                      botocore.exceptions.EndpointConnectionError)):
        return ProviderError(ProviderReason.TIMEOUT, f"{what}: EC2 did not answer: {e}")
    if not isinstance(e, botocore.exceptions.ClientError):
        return ProviderError(ProviderReason.TIMEOUT, f"{what}: {e}")
    code, message = _code(e), str(e.response.get("Error", {}).get("Message", ""))
    text = f"{what}: {code}: {message}"
    if code in _NO_CAPACITY:
        return ProviderError(ProviderReason.NO_CAPACITY, text)
    if code in _QUOTA:
        return ProviderError(ProviderReason.QUOTA_EXCEEDED, text)
    if code in _AUTH:
        return ProviderError(ProviderReason.AUTH_FAILED, text)
    if code in _THROTTLED:
        return ProviderError(ProviderReason.TIMEOUT, text, retry_after_s=30.0)
    return ProviderError(ProviderReason.INVALID_REQUEST, text)
