"""Readiness probing: which replicas get traffic, and which stayed unhealthy for too long.

A replica's probe is an HTTP GET of `path` on its host (on `port` when given, else the port of
its URL) every `period_s`; a 2xx or 3xx within `timeout_s` passes, anything else fails. The
decision is a pure state machine (`ProbeTracker`), fed one result at a time, like the kubelet's
readiness probe with its success and failure thresholds:

    starting  --success_threshold passes-->  ready
    starting  --startup_failure_threshold failures-->  unhealthy  (never came up)
    ready     --failure_threshold failures-->  unhealthy
    unhealthy --success_threshold passes-->  ready
    unhealthy --replace_after failures more-->  reported, once, as to be replaced

Draining replicas are not probed: the control plane is taking them away, and a probe must not
make one ready again. `Prober.probe_once()` runs one round (tests call it; no sleeping);
`Prober.run()` loops it every period until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from corral.gateway.routes import ReplicaState, RouteTable

__all__ = ["ProbeSpec", "ProbeTracker", "Prober"]

log = logging.getLogger("corral.gateway")


@dataclass(frozen=True)
class ProbeSpec:
    path: str = "/healthz"
    port: int | None = None
    period_s: float = 2.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    #: a starting replica may fail this many probes in a row while it boots (loading weights)
    startup_failure_threshold: int = 150
    #: failures in a row, once unhealthy, before it is reported for replacement
    replace_after: int = 15

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"probe path {self.path!r} must start with '/'")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"probe port {self.port} is not a TCP port")
        if self.period_s <= 0 or self.timeout_s <= 0:
            raise ValueError("probe period_s and timeout_s must be above 0")
        if min(self.success_threshold, self.failure_threshold,
               self.startup_failure_threshold, self.replace_after) < 1:
            raise ValueError("probe thresholds must be at least 1")


@dataclass
class ProbeTracker:
    """One replica's probe history. `observe` returns the state it should move to (the same
    state when nothing changes)."""

    spec: ProbeSpec
    passes: int = 0
    failures: int = 0
    #: failures in a row since it became unhealthy
    unhealthy_failures: int = 0
    reported: bool = False

    def observe(self, state: ReplicaState, ok: bool) -> ReplicaState:
        if ok:
            self.passes, self.failures, self.unhealthy_failures = self.passes + 1, 0, 0
            self.reported = False
            if state in (ReplicaState.STARTING, ReplicaState.UNHEALTHY) \
                    and self.passes >= self.spec.success_threshold:
                return ReplicaState.READY
            return state
        self.passes, self.failures = 0, self.failures + 1
        if state is ReplicaState.UNHEALTHY:
            self.unhealthy_failures += 1
            return state
        limit = (self.spec.startup_failure_threshold if state is ReplicaState.STARTING
                 else self.spec.failure_threshold)
        if state in (ReplicaState.STARTING, ReplicaState.READY) and self.failures >= limit:
            return ReplicaState.UNHEALTHY
        return state

    def due_for_replacement(self, state: ReplicaState) -> bool:
        """True once per unhealthy spell that lasted `replace_after` failed probes."""
        if state is ReplicaState.UNHEALTHY and not self.reported \
                and self.unhealthy_failures >= self.spec.replace_after:
            self.reported = True
            return True
        return False


Unhealthy = Callable[[str, str], None]


@dataclass
class Prober:
    """Probes every non-draining replica of the table. `on_unhealthy(service, replica_id)` is
    called once for each replica that stayed unhealthy (the control plane replaces it);
    `stuck()` lists them too."""

    table: RouteTable
    client: httpx.AsyncClient
    default: ProbeSpec = field(default_factory=ProbeSpec)
    on_unhealthy: Unhealthy | None = None
    _specs: dict[str, ProbeSpec] = field(default_factory=dict)
    _trackers: dict[tuple[str, str], ProbeTracker] = field(default_factory=dict)
    _stuck: set[tuple[str, str]] = field(default_factory=set)

    def set_spec(self, service: str, spec: ProbeSpec) -> None:
        self._specs[service] = spec
        for key in [k for k in self._trackers if k[0] == service]:
            del self._trackers[key]  # new thresholds start a new count

    def stuck(self) -> list[tuple[str, str]]:
        """(service, replica) pairs reported for replacement and still unhealthy."""
        return sorted(self._stuck)

    async def probe_once(self) -> None:
        targets = [(route.name, r.id, r.url) for route in self.table.services()
                   for r in route.replicas.values() if r.state is not ReplicaState.DRAINING]
        results = await asyncio.gather(*(self._probe(s, url) for s, _, url in targets))
        for (service, replica_id, _), ok in zip(targets, results, strict=True):
            self._apply(service, replica_id, ok)
        live = {(s, r) for s, r, _ in targets}
        for key in [k for k in self._trackers if k not in live]:
            del self._trackers[key]  # removed or draining: forget its history
        self._stuck &= live

    async def run(self) -> None:
        """Probe every `period_s` of the default spec until cancelled."""
        while True:
            await self.probe_once()
            await asyncio.sleep(min([self.default.period_s,
                                     *(s.period_s for s in self._specs.values())]))

    def _spec(self, service: str) -> ProbeSpec:
        return self._specs.get(service, self.default)

    async def _probe(self, service: str, url: str) -> bool:
        spec = self._spec(service)
        target = httpx.URL(url)
        target = target.copy_with(raw_path=spec.path.encode(),
                                  port=spec.port if spec.port is not None else target.port)
        try:
            response = await self.client.get(target, timeout=spec.timeout_s)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 400

    def _apply(self, service: str, replica_id: str, ok: bool) -> None:
        replica = self.table.replica(service, replica_id)
        if replica is None or replica.state is ReplicaState.DRAINING:
            return  # changed by the control plane while the probe ran
        tracker = self._trackers.setdefault((service, replica_id),
                                            ProbeTracker(self._spec(service)))
        state = tracker.observe(replica.state, ok)
        if state is not replica.state:
            log.info("replica %s of %s: %s -> %s", replica_id, service, replica.state.value,
                     state.value)
            self.table.set_state(service, replica_id, state)
        if ok:  # it answers: a suspicion from a cut response is over
            self.table.clear_suspect(service, replica_id)
            self._stuck.discard((service, replica_id))
        elif tracker.due_for_replacement(state):
            self._stuck.add((service, replica_id))
            if self.on_unhealthy is not None:
                self.on_unhealthy(service, replica_id)
