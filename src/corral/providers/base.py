"""The provider interface: where capacity comes from (offers, launch, terminate, list).

A provider is one place corral can rent (or has) machines: a static inventory, SSH hosts, a cloud
account in a region, a cluster bound to its backend. It answers four questions and nothing more:
what can be rented now (`offers`), rent these (`launch`), return these (`terminate`), and what did
corral rent here (`instances`, found by tag so reconciliation can find strays after a crash).

Each instance walks the capacity lifecycle::

    requested -> provisioning -> joining -> ready -> draining -> terminating -> terminated
         \\______________\\___________\\_________________________________________/-> failed

Policy (which offer, how many, when to return) lives in `corral.autoscale`, not here.
Every instance corral launches carries the tags in `required_tags`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from corral.core.model import LABEL_CONTAINER_RUNTIME, NO_CONTAINER_RUNTIME, CapacityKind

__all__ = [
    "LIVE_STATES",
    "TAG_CLUSTER",
    "TAG_INSTANCE",
    "TAG_PROVIDER",
    "CapacityState",
    "Instance",
    "Interruptible",
    "Notice",
    "Offer",
    "Provider",
    "join_labels",
    "required_tags",
    "ssh_instance_type",
]

TAG_CLUSTER = "corral:cluster"
TAG_INSTANCE = "corral:instance"
TAG_PROVIDER = "corral:provider"


class CapacityState(enum.StrEnum):
    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    JOINING = "joining"
    READY = "ready"
    DRAINING = "draining"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


#: States of an instance that still costs money or may still join.
LIVE_STATES = frozenset(
    {
        CapacityState.REQUESTED,
        CapacityState.PROVISIONING,
        CapacityState.JOINING,
        CapacityState.READY,
        CapacityState.DRAINING,
        CapacityState.TERMINATING,
    }
)


@dataclass(frozen=True)
class Offer:
    """Something a provider can rent now: one instance type, capacity kind and zone, at a price.

    `price_per_hour` is the whole instance's; `source` says where the price comes from
    (``api:<endpoint>`` or ``catalog:<file>@<date>``) and `as_of` its ISO date. `runs_images`:
    whether its instances run `image:` work (podman on the machine image), as the provider's
    settings declare it; None when they do not say, and then no image work is rented for on it
    (the autoscaler never guesses: a host that joins without podman would hold nothing).
    `labels`: the labels an instance of it joins with besides the built-in ones (the pool
    file's provider `labels`, its instance type's `instance_labels`, an ssh host's own),
    sorted pairs as on `corral.core.model.Node`.
    """

    provider: str
    instance_type: str
    gpu_model: str
    gpus: int
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    price_per_hour: Decimal
    capacity_kind: CapacityKind
    region: str
    zone: str
    source: str
    as_of: str
    runs_images: bool | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def price_per_gpu_hour(self) -> Decimal:
        return self.price_per_hour / self.gpus if self.gpus else self.price_per_hour


@dataclass(frozen=True)
class Instance:
    """One machine corral asked a provider for; `node_id` is the node it joined as, once it has."""

    id: str
    provider: str
    offer: Offer
    state: CapacityState
    reason: str
    launched_at: float
    node_id: str | None


@runtime_checkable
class Provider(Protocol):
    """Where capacity comes from. Implementations: static, ssh, aws (and clusters as providers).

    Contracts:
    - `offers()` may call the provider's API; raises `ProviderError` (AuthFailed, Timeout) when it
      cannot answer. Never returns offers with zero GPUs.
    - `launch()` asks for `count` instances of `offer`, each started with `user_data` and carrying
      `tags` (which include `required_tags`). It returns the instances it asked for (state
      requested or provisioning) or raises `ProviderError` having launched nothing it leaves behind.
    - `terminate()` is idempotent: unknown or already terminated ids are not errors.
    - `instances()` lists every instance corral launched here (by tag), live or recently ended.
    """

    name: str
    kind: str

    def offers(self) -> list[Offer]: ...

    def launch(
        self, offer: Offer, count: int, *, user_data: str, tags: Mapping[str, str]
    ) -> list[Instance]: ...

    def terminate(self, instance_ids: Sequence[str]) -> None: ...

    def instances(self) -> list[Instance]: ...


def required_tags(cluster_id: str, instance_id: str, provider: str) -> dict[str, str]:
    """The tags every instance corral launches carries, so each is traceable to its cluster."""
    return {TAG_CLUSTER: cluster_id, TAG_INSTANCE: instance_id, TAG_PROVIDER: provider}


def ssh_instance_type(gpus: int, gpu_model: str) -> str:
    """The instance type of an ssh host, `ssh:<gpus>x<model>`: its offers name it so
    (`corral.providers.ssh`), and the pool file's `idle_timeouts` and `instance_labels` are keyed
    by it (`corral.spec`, which may import this module: it imports only the core model, and no
    provider imports spec). One spelling, so a key the pool file accepts is a type rented."""
    return f"ssh:{gpus}x{gpu_model}"


def join_labels(labels: Mapping[str, str], runs_images: bool | None
                ) -> tuple[tuple[str, str], ...]:
    """The labels an instance of a provider joins with, as sorted pairs: the provider's own
    `labels`, and whether it runs images as its agent would report it
    (`corral.dev/container-runtime`: podman where the provider declares `runs_images: true`,
    else none: the autoscaler never rents image work where it is not declared)."""
    runtime = "podman" if runs_images else NO_CONTAINER_RUNTIME
    return tuple(sorted({**labels, LABEL_CONTAINER_RUNTIME: runtime}.items()))


@dataclass(frozen=True)
class Notice:
    """A provider's warning that it takes an instance back (a spot interruption): the instance
    is gone at `deadline` (wall-clock seconds), whatever runs there."""

    instance_id: str
    deadline: float
    reason: str


@runtime_checkable
class Interruptible(Protocol):
    """A provider that warns before it takes capacity back (aws spot; the fake provider).

    `notices()` lists the warnings in force now for instances corral launched here; it is
    called every autoscaler pass, so it must be cheap and idempotent (a notice is repeated
    until the instance is gone)."""

    def notices(self) -> list[Notice]: ...
