"""The agent backend: work runs on hosts where `corral agent` runs; they pull it from a mailbox.

    control loop                 mailbox (the store)                  corral agent on a host
    AgentBackend.launch ──────> agent_workers rows (spec, rendezvous) <── long poll (sync) ──┐
    AgentBackend.stop   ──────> stop deadline + reason on those rows  <──────────────────────┤
    AgentBackend.poll   <────── last reported state per worker       <── heartbeat + states ─┤
                        ──────> fence(node) when its heartbeat stops                          │
    AgentBackend.inventory <─── agent_nodes (facts, last heartbeat)  <── join (token) ───────┘
    read_logs           <────── agent_logs chunks                     <── shipped logs
    log_line_times      <────── agent_log_times (size, server time)   <── runner's samples

The backend never talks to a host: it writes what should run and reads what was reported
(`Mailbox`, implemented over the store by `corral.store.agents.StoreMailbox`; this layer does not
import the store). Each agent runs its workers under the local backend's runner
(`corral.agent`), so the environment contract, logs, the preemption contract and exit codes are
the local backend's.

Lost nodes: a node not heard from for `heartbeat_timeout_s` is lost. `poll` fences it (its
unfinished workers become LOST with NodeLost, for good) and the control loop restarts their gangs
elsewhere; `inventory` reports it UNHEALTHY, so the health monitor cordons it. An agent that comes
back reads that its workers were fenced and kills them, and its node takes work again. A control
plane that was itself down does not count that time against the agents: a node is judged from
max(last heartbeat, this backend's start + `restart_grace_s`), the grace covering an agent's
retry backoff (at most 10 s between tries) and the server's own start-up.

Rendezvous: CORRAL_MASTER_ADDR is the address worker 0's agent advertised; CORRAL_MASTER_PORT is
derived from (workload, attempt), as on Slurm (a port a host cannot reserve for us in advance).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from corral.backends import base
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.containers import agent_dry_run_note
from corral.backends.errors import (
    AttemptStillRunning,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchConflict,
    UnknownAttempt,
)
from corral.backends.log_times import line_times
from corral.backends.records import SAFE_ID
from corral.core.model import (
    LABEL_CONTAINER_RUNTIME,
    NO_CONTAINER_RUNTIME,
    CapacityKind,
    Health,
    Node,
)

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT_S",
    "AgentBackend",
    "AgentNode",
    "AssignedWorker",
    "Mailbox",
    "WorkerReport",
    "container_runtime",
    "master_port",
    "node_from_facts",
]

DEFAULT_HEARTBEAT_TIMEOUT_S: Final = 30.0
#: after a control-plane start, agents get this long on top of the timeout to reconnect: they
#: retry with a backoff of up to 10 s (`corral.agent.client.Backoff`), and the API may start
#: serving a few seconds after this backend exists
DEFAULT_RESTART_GRACE_S: Final = 15.0
LABEL_INSTANCE_TYPE: Final = "corral.io/instance-type"
LABEL_INSTANCE_ID: Final = "corral.io/instance-id"
#: how long `packaging_fields` keeps its answer: it is asked on every submission, and a host
#: that joins with podman is seen within this
PACKAGING_TTL_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class AgentNode:
    """A registered host: what it declared at join (`facts`), when it was last heard from."""

    node_id: str
    facts: Mapping[str, Any]
    last_seen: float
    lost_at: float | None
    seq: int
    instance_id: str = ""


@dataclass(frozen=True, slots=True)
class AssignedWorker:
    """One worker assigned to a node, with what was asked of it and what it last reported."""

    workload_id: str
    attempt: int
    worker: int
    node_id: str
    spec: Mapping[str, Any]
    master_addr: str
    master_port: int
    stop_deadline: float | None  # server clock
    stop_reason: str
    fenced: bool
    state: str
    reason: str
    exit_code: int | None
    finished_at: float | None
    message: str


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What an agent says about one of its workers. `ended_s_ago`: how long ago it ended, by
    the agent's clock (the server places it on its own: clocks of hosts may disagree)."""

    workload_id: str
    attempt: int
    worker: int
    state: str
    reason: str
    exit_code: int | None = None
    ended_s_ago: float | None = None
    message: str = ""


class Mailbox(Protocol):
    """Where assignments and reports meet (the store, in production)."""

    def nodes(self) -> list[AgentNode]: ...
    def workers(self) -> list[AssignedWorker]: ...
    def assigned_spec(self, workload_id: str, attempt: int) -> dict[str, Any] | None: ...
    def assign(self, spec: LaunchSpec, master_addr: str, master_port: int,
               now: float) -> None: ...
    def request_stop(self, workload_id: str, attempt: int, deadline: float,
                     reason: str) -> bool: ...
    def fence(self, node_id: str, now: float, why: str) -> list[AssignedWorker]: ...
    def release(self, workload_id: str, attempt: int) -> None: ...
    def latest_attempt(self, workload_id: str) -> int | None: ...
    def read_log(self, workload_id: str, attempt: int, worker: int, offset: int,
                 max_bytes: int) -> bytes: ...
    def workers_of(self, workload_id: str, attempt: int) -> Sequence[int]: ...
    def log_times(self, workload_id: str, attempt: int, worker: int, start: int,
                  end: int) -> list[tuple[int, float]]: ...


def master_port(workload_id: str, attempt: int) -> int:
    """The gang's rendezvous port: derived, so every host computes the same (20000-29999)."""
    return 20000 + zlib.crc32(f"{workload_id}/{attempt}".encode()) % 10000


def container_runtime(facts: Mapping[str, Any]) -> str | None:
    """The container runtime a host reported at join (`corral.agent.host`), or None: it has
    none, or its agent is older than the report."""
    found = dict(facts.get("labels") or {}).get(LABEL_CONTAINER_RUNTIME)
    return None if found in (None, "", NO_CONTAINER_RUNTIME) else str(found)


def _says_no_runtime(node: AgentNode) -> bool:
    """The host reported it has none (an agent older than the report said nothing: its own
    backend decides at launch, as it always did)."""
    labels = dict(node.facts.get("labels") or {})
    return labels.get(LABEL_CONTAINER_RUNTIME) == NO_CONTAINER_RUNTIME


def node_from_facts(node: AgentNode, health: Health = Health.HEALTHY) -> Node:
    """The pool node an agent declared at join."""
    f = node.facts
    labels = {str(k): str(v) for k, v in dict(f.get("labels") or {}).items()}
    if f.get("instance_type"):
        labels[LABEL_INSTANCE_TYPE] = str(f["instance_type"])
    if node.instance_id:
        labels[LABEL_INSTANCE_ID] = node.instance_id
    return Node(
        id=node.node_id, provider=str(f.get("provider") or "agent"),
        gpu_model=str(f.get("gpu_model") or "none"), gpu_count=int(f.get("gpus") or 0),
        gpu_memory_mib=int(f.get("gpu_memory_mib") or 0), cpu_milli=int(f.get("cpu_milli") or 0),
        memory_mib=int(f.get("memory_mib") or 0),
        price_per_gpu_hour=float(f.get("price_per_gpu_hour") or 0.0),
        capacity_kind=CapacityKind(str(f.get("capacity_kind") or "owned")),
        region=str(f.get("region") or "default"), zone=str(f.get("zone") or "default"),
        rack=str(f.get("rack") or ""), health=health, labels=tuple(sorted(labels.items())))


class AgentBackend(Backend, InventorySource, LogSource):
    """Places work on `corral agent` hosts through `mailbox`. See the module docstring.

    heartbeat_timeout_s: a node not heard from this long is lost. restart_grace_s: extra time
    after this backend starts (see the module docstring). clock: the server's clock (heartbeats
    are stamped with the API's clock, which must be the same).
    """

    name = "agent"

    def __init__(self, mailbox: Mailbox, *, heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
                 restart_grace_s: float = DEFAULT_RESTART_GRACE_S,
                 clock: Callable[[], float] = time.time) -> None:
        if heartbeat_timeout_s <= 0:
            raise ValueError(f"heartbeat_timeout_s must be > 0, got {heartbeat_timeout_s}")
        self.mailbox, self.heartbeat_timeout_s, self.clock = mailbox, heartbeat_timeout_s, clock
        self.restart_grace_s = restart_grace_s
        self.started_at = clock()
        self._packaging: tuple[float, frozenset[str]] | None = None  # (when, answer)

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        if not SAFE_ID.fullmatch(spec.workload_id):
            raise InvalidLaunchSpec(
                "workload_id", f"{spec.workload_id!r}: agents keep each workload in a folder of "
                "that name; use letters, digits, '.', '_' and '-' (200 at most)")
        known = self.mailbox.assigned_spec(spec.workload_id, spec.attempt)
        if known is not None:
            if LaunchSpec.from_record(known) != spec:
                raise LaunchConflict(f"{spec.workload_id} attempt {spec.attempt} was assigned "
                                     "with another spec: relaunch with a new attempt number")
            return
        now = self.clock()
        nodes = {n.node_id: n for n in self.mailbox.nodes()}
        for a in spec.assignments:
            node = nodes.get(a.node_id)
            if node is None:
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id!r} "
                                        f"has no agent (registered: {sorted(nodes)})")
            if self._lost(node, now):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} is "
                                        "lost (its agent stopped heartbeating)")
            if spec.image is not None and _says_no_runtime(node):
                raise InvalidLaunchSpec("image", f"worker {a.worker}: node {a.node_id} cannot "
                                        "run images: its agent found no podman working there")
            gpus = int(node.facts.get("gpus") or 0)
            if any(d >= gpus for d in a.devices):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} has "
                                        f"{gpus} GPUs, the plan gives {list(a.devices)}")
        leader = min(spec.assignments, key=lambda a: a.worker)
        addr = str(nodes[leader.node_id].facts.get("address") or "127.0.0.1")
        # One transaction for the whole gang: every agent sees all of its workers, or none.
        self.mailbox.assign(spec, addr, master_port(spec.workload_id, spec.attempt), now)

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        if grace_seconds < 0:
            raise InvalidRequest("grace_seconds", f"must be >= 0, got {grace_seconds}")
        # The deadline is on the server's clock; an agent receives the time left, not the instant.
        self.mailbox.request_stop(workload_id, attempt, self.clock() + grace_seconds, reason)

    def poll(self, now: float) -> list[WorkerStatus]:
        self._fence_lost(self.clock())
        return [self._status(w, now) for w in self.mailbox.workers()]

    def release(self, workload_id: str, attempt: int) -> None:
        workers = [w for w in self.mailbox.workers()
                   if (w.workload_id, w.attempt) == (workload_id, attempt)]
        running = [w.worker for w in workers if not WorkerState(w.state).ended]
        if running:
            raise AttemptStillRunning(
                f"{workload_id} attempt {attempt}: workers {running} have not ended; stop first")
        if workers:
            self.mailbox.release(workload_id, attempt)

    # --- capabilities --------------------------------------------------------------------------

    @property
    def packaging_fields(self) -> frozenset[str]:
        """What `corral.control.packaging` may accept: image once some registered host reports
        a container runtime (`corral.dev/container-runtime`, found by its agent at start: the
        local backend's probe). The core then places image work on those hosts only
        (`corral.core.model.LABEL_RUNS_IMAGES`). A lost host counts: it may come back, as the
        submission check counts it."""
        now = self.clock()
        if self._packaging is None or not 0 <= now - self._packaging[0] < PACKAGING_TTL_S:
            runs = any(container_runtime(n.facts) for n in self.mailbox.nodes())
            self._packaging = (now, frozenset({"setup", "workdir"} | ({"image"} if runs
                                                                     else set())))
        return self._packaging[1]

    def image_note(self, image: str) -> str:
        """The dry run's sentence on `image` here: the hosts that report a runtime."""
        hosts = sorted(n.node_id for n in self.mailbox.nodes() if container_runtime(n.facts))
        return agent_dry_run_note(image, hosts)

    def inventory(self) -> list[Node]:
        """Every registered host; a lost one UNHEALTHY (the health monitor cordons it)."""
        now = self.clock()
        return [node_from_facts(n, Health.UNHEALTHY if self._lost(n, now) else Health.HEALTHY)
                for n in self.mailbox.nodes()]

    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        if offset < 0 or max_bytes <= 0:
            raise InvalidRequest("offset", "offset must be >= 0 and max_bytes > 0")
        if attempt is None:
            attempt = self.mailbox.latest_attempt(workload_id)
            if attempt is None:
                raise UnknownAttempt(f"workload {workload_id!r} was never assigned to an agent")
        if worker not in self.mailbox.workers_of(workload_id, attempt):
            raise UnknownAttempt(f"{workload_id} attempt {attempt} has no worker {worker}")
        chunk = self.mailbox.read_log(workload_id, attempt, worker, offset, max_bytes)
        return chunk, offset + len(chunk)

    def log_line_times(self, workload_id: str, worker: int, offset: int, data: bytes, *,
                       attempt: int | None = None) -> list[float | None]:
        """When each line of `data` (read from `offset`) was written, from the samples its
        agent shipped (the runner's `log-times`, placed on the server's clock when they
        arrived: `corral.backends.log_times`); None for a line no sample covers yet."""
        if attempt is None:
            attempt = self.mailbox.latest_attempt(workload_id)
            if attempt is None:
                raise UnknownAttempt(f"workload {workload_id!r} was never assigned to an agent")
        samples = self.mailbox.log_times(workload_id, attempt, worker, offset,
                                         offset + len(data))
        return line_times(data, offset, samples)

    # --- lost nodes ----------------------------------------------------------------------------

    def _lost(self, node: AgentNode, now: float) -> bool:
        if node.lost_at is not None:
            return True
        since = max(node.last_seen, self.started_at + self.restart_grace_s)
        return now - since > self.heartbeat_timeout_s

    def _fence_lost(self, now: float) -> None:
        for node in self.mailbox.nodes():
            if node.lost_at is None and self._lost(node, now):
                silent = now - node.last_seen
                self.mailbox.fence(node.node_id, now,
                                   f"no heartbeat for {silent:.0f} s (limit "
                                   f"{self.heartbeat_timeout_s:g} s)")

    @staticmethod
    def _status(w: AssignedWorker, now: float) -> WorkerStatus:
        state = WorkerState(w.state)
        finished = None
        if state.ended:
            finished = now if w.finished_at is None else min(w.finished_at, now)
        return WorkerStatus(workload_id=w.workload_id, attempt=w.attempt, worker=w.worker,
                            node_id=w.node_id, state=state,
                            reason=w.reason or base.STARTING, observed_at=now,
                            exit_code=w.exit_code, finished_at=finished, message=w.message)
