"""`settings:` of a renting provider in the pool file: what kind `aws` and kind `ssh` need.

A provider of `kind: aws` rents EC2 instances (corral.providers.aws); one of `kind: ssh` starts
agents on hosts corral reaches over SSH (corral.providers.ssh). No credential is ever written
here: boto3 finds AWS's, and an SSH key is named by its path on the server. Both may declare
`runs_images` (their machines have podman, so `image:` work may be rented for there).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from corral.spec.labels import MAX_LABELS, check_labels
from corral.spec.limits import MAX_PRICE
from corral.spec.quantities import CpuMilli, SizeMiB
from corral.spec.workload import check_name

__all__ = ["NEEDS", "SETTINGS", "AwsProviderSettings", "SshHostSettings", "SshProviderSettings",
           "no_duplicates"]

Price = Annotated[float, Field(strict=True, ge=0, le=MAX_PRICE, allow_inf_nan=False)]


class AwsProviderSettings(BaseModel):
    """`settings:` of a provider of `kind: aws` (corral.providers.aws). No credentials here:
    boto3 reads them from the server's environment or instance role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9-]+$")
    image_id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$",
                          description="an AMI with corral installed (it runs `corral agent`)")
    instance_types: list[str] = Field(min_length=1, max_length=64)
    zones: list[str] = Field(default_factory=list, max_length=32)
    capacity_kinds: list[Literal["on-demand", "spot"]] = Field(
        default_factory=lambda: ["on-demand", "spot"], min_length=1)
    subnet_id: str | None = None
    security_group_ids: list[str] = Field(default_factory=list, max_length=16)
    iam_instance_profile: str | None = None
    on_demand_prices: dict[str, Price] = Field(
        default_factory=dict, description="per instance-hour by instance type; beats the catalog")
    endpoint_url: str | None = None
    runs_images: bool | None = Field(None, description=(
        "whether the AMI has podman, so its instances run `image:` work; unset: no image work "
        "is rented for here"))
    profile: str | None = Field(
        None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+=,-]+$",
        description="a named profile of the server's AWS config (credentials by name; "
        "default: boto3's chain: environment, instance role)")


def _not_a_key(value: str, field: str) -> str:
    """A path, never the key itself: a pasted key would be stored and shown in clear."""
    if "-----BEGIN" in value or "\n" in value:
        raise ValueError(f"{field} is the path of a file on the server, not the key itself; "
                         "write the key to a file (mode 0600) and give its path")
    return value


class SshHostSettings(BaseModel):
    """One host of a provider of `kind: ssh` (corral.providers.ssh.SshHost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the node id it joins as")
    address: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(22, strict=True, ge=1, le=65535)
    user: str = Field("root", min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    gpus: int = Field(0, strict=True, ge=0, le=64)
    gpu_model: str = Field("none", max_length=63)
    gpu_memory: SizeMiB = 0
    #: what the host offers: the autoscaler rents it only for work that fits these
    cpu: CpuMilli = 0
    memory: SizeMiB = 0
    price_per_gpu_hour: Price = 0.0
    zone: str = Field("default", max_length=63)
    rack: str = Field("", max_length=63)
    python: str = Field("python3", min_length=1, max_length=255, pattern=r"^[A-Za-z0-9/._+-]+$")
    root: str = Field("/opt/corral", min_length=2, max_length=255, pattern=r"^/[A-Za-z0-9/._-]+$")
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS, description=(
        "labels this host joins with, over the provider's `labels` (Kubernetes label syntax)"))

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "host name")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)


class SshProviderSettings(BaseModel):
    """`settings:` of a provider of `kind: ssh`. The key is named by its path on the server:
    corral never stores nor returns a key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[SshHostSettings] = Field(min_length=1, max_length=10_000)
    identity_file: str = Field(min_length=1, max_length=4096,
                               description="path of the private key on the server")
    known_hosts: str = Field(min_length=1, max_length=4096,
                             description="path of the known_hosts file the hosts' keys are in")
    wheel: str | None = Field(None, max_length=4096, description=(
        "path of corral's wheel to install on the hosts (default: built from this source tree)"))
    agent_args: list[Annotated[str, Field(max_length=255)]] = Field(
        default_factory=list, max_length=32, description="more `corral agent` flags")
    timeout_s: float = Field(120.0, strict=True, gt=0, le=3600, allow_inf_nan=False)
    runs_images: bool | None = Field(None, description=(
        "whether the hosts have podman, so they run `image:` work; unset: no image work is "
        "rented for here"))

    @field_validator("identity_file", "known_hosts")
    @classmethod
    def _path(cls, v: str, info: ValidationInfo) -> str:
        return _not_a_key(v, info.field_name or "path")

    @model_validator(mode="after")
    def _unique_hosts(self) -> SshProviderSettings:
        no_duplicates([h.name for h in self.hosts], "host")
        return self


#: the settings model of each renting kind
SETTINGS: dict[str, type[BaseModel]] = {"aws": AwsProviderSettings, "ssh": SshProviderSettings}
NEEDS = {"aws": "region, image_id and instance_types", "ssh": "hosts, identity_file and known_hosts"}


def no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} {n!r} is defined twice; names must be unique")
        seen.add(n)
