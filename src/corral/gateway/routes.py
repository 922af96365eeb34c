"""The route table: per service, its replicas (URL and state) and its auth.

The control plane feeds it; the proxy reads it; the prober moves replicas between starting,
ready and unhealthy. It holds no I/O: a mutation tells the listeners (the admission queue wakes
its waiters, a drain waiter sees the last in-flight request end).

    table = RouteTable()
    table.set_service("chat", ServiceAuth.token("s3cret"))
    table.set_replica("chat", "r0", "http://10.0.0.5:8000")          # starting: no traffic
    table.set_state("chat", "r0", ReplicaState.READY)                # the prober does this
    table.set_state("chat", "r0", ReplicaState.DRAINING)             # in-flight ones finish
    await wait_drained(table, "chat", "r0"); table.remove_replica("chat", "r0")

Mutate it from the event loop the gateway app runs in (from another thread, go through
`loop.call_soon_threadsafe`): listeners wake asyncio futures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from corral.gateway.limits import ServiceLimits

__all__ = [
    "SERVICE_NAME",
    "Replica",
    "ReplicaState",
    "RouteTable",
    "ServiceAuth",
    "ServiceRoute",
    "wait_drained",
]

#: a service name as corral's specs allow it (`corral.spec` names); anything else is not routed
SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class ReplicaState(StrEnum):
    STARTING = "starting"    # launched, not yet passed its readiness probe: no traffic
    READY = "ready"          # gets new requests
    DRAINING = "draining"    # finishes what it holds, gets nothing new (scale-down, rollout)
    UNHEALTHY = "unhealthy"  # failed its probe: no traffic until it passes again


@dataclass
class Replica:
    id: str
    url: str
    state: ReplicaState = ReplicaState.STARTING
    #: requests the gateway has sent it whose response has not ended (least-outstanding)
    outstanding: int = 0
    #: until this event-loop time new requests avoid it (0: trusted): it broke a response off
    #: after its headers went out, so it is likely dead though no probe has failed yet
    suspect_until: float = 0.0

    def suspect(self, now: float) -> bool:
        return self.suspect_until > now


@dataclass(frozen=True)
class ServiceAuth:
    """Public, or a bearer token known only by its SHA-256 (the control plane never has to
    hand the gateway the token itself)."""

    token_sha256: str | None = None

    @classmethod
    def public(cls) -> ServiceAuth:
        return cls(None)

    @classmethod
    def token(cls, token: str) -> ServiceAuth:
        return cls(hashlib.sha256(token.encode()).hexdigest())

    @classmethod
    def deny(cls) -> ServiceAuth:
        """No token admits: a service whose token cannot be known now (its secret is gone)
        fails closed instead of turning public. No SHA-256 digest is empty."""
        return cls("")

    @property
    def is_public(self) -> bool:
        return self.token_sha256 is None

    def allows(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value admits the request. The hashes are compared
        in constant time, so the comparison leaks nothing of the expected token."""
        if self.token_sha256 is None:
            return True
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return False
        digest = hashlib.sha256(presented.strip().encode("utf-8", "surrogateescape")).hexdigest()
        return hmac.compare_digest(digest, self.token_sha256)


@dataclass
class ServiceRoute:
    name: str
    auth: ServiceAuth
    replicas: dict[str, Replica] = field(default_factory=dict)
    limits: ServiceLimits = field(default_factory=ServiceLimits)

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state is ReplicaState.READY]

    def outstanding(self) -> int:
        """Requests the gateway has on this service's replicas now."""
        return sum(r.outstanding for r in self.replicas.values())

    def admits(self) -> bool:
        """Whether a request may go to a replica now: one is ready, and the service is under
        its `max_concurrent` (else the request waits in the service's queue)."""
        cap = self.limits.max_concurrent
        return bool(self.ready()) and (cap is None or self.outstanding() < cap)


Listener = Callable[[str], None]


class RouteTable:
    """Services and their replicas. Every method is synchronous and cheap; listeners are called
    with the service's name after each change that can matter to a waiter (a replica's state,
    the set of replicas, the service itself, a draining replica's last request ending)."""

    def __init__(self) -> None:
        self._services: dict[str, ServiceRoute] = {}
        self._listeners: list[Listener] = []

    # ---- what the control plane calls ----------------------------------------------------
    def set_service(self, name: str, auth: ServiceAuth | None = None,
                    limits: ServiceLimits | None = None) -> None:
        """Add a service, or change its auth and limits (its replicas stay)."""
        if not SERVICE_NAME.fullmatch(name):
            raise ValueError(f"service name {name!r} is not a corral name")
        auth = auth or ServiceAuth.public()
        limits = limits or ServiceLimits()
        if name in self._services:
            self._services[name].auth, self._services[name].limits = auth, limits
        else:
            self._services[name] = ServiceRoute(name, auth, limits=limits)
        self._changed(name)

    def remove_service(self, name: str) -> None:
        if self._services.pop(name, None) is not None:
            self._changed(name)

    def set_replica(self, service: str, replica_id: str, url: str,
                    state: ReplicaState = ReplicaState.STARTING) -> None:
        """Add a replica (starting unless told otherwise), or change its URL and state."""
        _check_url(url)
        route = self._route(service)
        current = route.replicas.get(replica_id)
        if current is None:
            route.replicas[replica_id] = Replica(replica_id, url.rstrip("/"), state)
        else:
            if current.url != url.rstrip("/") or current.state is not state:
                current.suspect_until = 0.0  # restarted or moved: what it did before is moot
            current.url, current.state = url.rstrip("/"), state
        self._changed(service)

    def set_state(self, service: str, replica_id: str, state: ReplicaState) -> None:
        replica = self._replica(service, replica_id)
        if replica.state is not state:
            replica.state, replica.suspect_until = state, 0.0
            self._changed(service)

    def mark_suspect(self, service: str, replica_id: str, until: float) -> None:
        """New requests avoid the replica until event-loop time `until` while another ready
        one is trusted (`balancing.pick_replica`); a change of its state or URL, or a passing
        probe (`clear_suspect`), ends it sooner. No listener is told: it stays ready."""
        replica = self.replica(service, replica_id)
        if replica is not None:
            replica.suspect_until = max(replica.suspect_until, until)

    def clear_suspect(self, service: str, replica_id: str) -> None:
        replica = self.replica(service, replica_id)
        if replica is not None:
            replica.suspect_until = 0.0

    def remove_replica(self, service: str, replica_id: str) -> None:
        """Forget a replica. Requests it still holds run to their end; to lose none, set it
        draining first and wait for `wait_drained`."""
        if self._route(service).replicas.pop(replica_id, None) is not None:
            self._changed(service)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(service)` after changes; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ---- what the proxy, the prober and metrics read -------------------------------------
    def service(self, name: str) -> ServiceRoute | None:
        return self._services.get(name)

    def services(self) -> list[ServiceRoute]:
        return list(self._services.values())

    def replica(self, service: str, replica_id: str) -> Replica | None:
        route = self._services.get(service)
        return route.replicas.get(replica_id) if route else None

    def acquire(self, replica: Replica) -> None:
        replica.outstanding += 1

    def release(self, service: str, replica: Replica) -> None:
        replica.outstanding -= 1
        route = self._services.get(service)
        capped = route is not None and route.limits.max_concurrent is not None
        if capped or (replica.outstanding == 0 and replica.state is ReplicaState.DRAINING):
            self._changed(service)  # a slot freed under max_concurrent: a waiter may go

    # ---- internals -----------------------------------------------------------------------
    def _route(self, service: str) -> ServiceRoute:
        route = self._services.get(service)
        if route is None:
            raise KeyError(f"no service {service!r} in the route table")
        return route

    def _replica(self, service: str, replica_id: str) -> Replica:
        replica = self._route(service).replicas.get(replica_id)
        if replica is None:
            raise KeyError(f"service {service!r} has no replica {replica_id!r}")
        return replica

    def _changed(self, service: str) -> None:
        for listener in list(self._listeners):
            listener(service)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username is not None:
        raise ValueError(f"replica URL {url!r} must be http(s)://host[:port][/prefix]")


async def wait_drained(table: RouteTable, service: str, replica_id: str) -> None:
    """Return once the replica holds no request (or is gone). The control plane calls it after
    setting a replica draining and before stopping it, so no request is cut off."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def check(name: str) -> None:
        replica = table.replica(service, replica_id)
        if name == service and not done.done() and (replica is None or replica.outstanding == 0):
            done.set_result(None)

    unsubscribe = table.subscribe(check)
    try:
        check(service)
        await done
    finally:
        unsubscribe()
