"""`corral agent`'s loop: join once, then sync, act, ship logs, forever. See README.md here.

Data dir (one agent per data dir, 0700)::

    <data>/node.json      node id + node credential (0600), written once the join succeeded
    <data>/lease          touched every turn; runners kill their worker when it goes stale
    <data>/work/          the local backend's records and worker logs (`corral.backends.local`)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from corral.agent.client import AgentClient, Backoff, Refused, Unreachable
from corral.agent.health import GpuReporter, KnownAnswerSchedule
from corral.agent.host import container_label
from corral.agent.protocol import (
    AssignmentOut,
    HostFacts,
    ProgressIn,
    ReportIn,
    SyncIn,
    SyncOut,
)
from corral.agent.relayed import Relayed
from corral.agent.spot import SpotReporter, SpotWatcher
from corral.agent.workdirs import AgentWorkdirs
from corral.backends import base, elastic_world, local_runner
from corral.backends.base import LaunchSpec, WorkerState, WorkerStatus
from corral.backends.containers import ContainerRuntime
from corral.backends.errors import BackendError
from corral.backends.local import LocalBackend
from corral.backends.local_runner import EXIT_RECORD, LEASE_EXPIRED, read_json, write_json_atomic
from corral.backends.log_times import read_samples
from corral.backends.workdir import is_archive
from corral.backends.worker_users import WorkerUsers
from corral.core.model import LABEL_CONTAINER_RUNTIME, CapacityKind, Node

__all__ = ["Agent", "AgentSettings"]

log = logging.getLogger("corral.agent")

NODE_FILE: Final = "node.json"
LEASE_FILE: Final = "lease"
LOG_CHUNK: Final = 128 * 1024  # bytes per worker per turn: a chatty worker cannot starve the rest
#: the long poll's wait while a worker runs here: its end is seen only between syncs
ACTIVE_WAIT_S: Final = 0.5
Key = tuple[str, int]


@dataclass(frozen=True)
class AgentSettings:
    server: str
    data_dir: Path
    node_id: str
    join_token: str | None = None
    #: how long one sync waits for new assignments when nothing changed (the long poll)
    poll_wait_s: float = 2.0
    #: runners kill their workers once the agent has not renewed its lease this long; keep it
    #: below the server's heartbeat timeout, so a dead agent's work is gone before it restarts
    lease_s: float = 20.0
    #: kill every worker after this long without reaching the server (0: never; see README)
    self_fence_after_s: float = 0.0
    worker_users: WorkerUsers | None = None
    backoff: Backoff = field(default_factory=Backoff)
    #: EC2 instance metadata base URL to poll for spot interruption notices ("" : never;
    #: `corral.agent.spot`), and how often
    spot_notice_url: str = ""
    spot_poll_s: float = 5.0
    #: seconds between GPU health checks, reported with the heartbeat (0: never; `health.py`)
    gpu_probe_interval_s: float = 10.0
    #: seconds between known-answer tests of each idle GPU (0: never; `known_answer.py`)
    known_answer_interval_s: float = 3600.0


class Agent:
    def __init__(self, settings: AgentSettings, facts: HostFacts,
                 client: AgentClient | None = None,
                 clock: Callable[[], float] = time.time,
                 containers: ContainerRuntime | Literal["detect"] | None = "detect") -> None:
        """containers: what runs `image:` workers here; the command passes the runtime it
        reported in `facts` (`host.container_label`), so the two cannot disagree."""
        self.s, self.facts, self.clock = settings, facts, clock
        self.client = client or AgentClient(settings.server)
        root = settings.data_dir
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o711 if settings.worker_users is not None else 0o700)
        self.lease = root / LEASE_FILE
        self.lease.touch()
        self.node = Node(id=settings.node_id, provider=facts.provider, gpu_model=facts.gpu_model,
                         gpu_count=facts.gpus, gpu_memory_mib=facts.gpu_memory_mib,
                         cpu_milli=facts.cpu_milli, memory_mib=facts.memory_mib,
                         capacity_kind=CapacityKind(facts.capacity_kind),
                         # the vendor label (host.py) picks the device variables workers get
                         labels=tuple(sorted(facts.labels.items())))
        self._rendezvous: dict[Key, tuple[str, int]] = {}
        self.backend = LocalBackend(
            root / "work", nodes=[self.node], worker_users=settings.worker_users,
            remote_workers=True, rendezvous=self._rendezvous_of, lease=(self.lease, settings.lease_s),
            containers=containers)
        # uploaded workdirs, fetched from the server by digest and cached here (issue 13)
        self.backend.workdir_archives = AgentWorkdirs(settings.server, root / "workdirs",
                                                      self._credential,
                                                      in_use=self._workdirs_in_use).fetch
        self.credential: str | None = None
        # relayed `corral exec` / `port-forward` / `ssh` orders, each on its own thread
        self.relayed = Relayed(self.backend.work_dir, settings.server, self._credential,
                               lambda i, done: self.client.exec_done(self._credential(), i,
                                                                     done))
        self.seq = -1
        self.refused: dict[tuple[str, int, int], ReportIn] = {}  # launches this host refused
        self.shipped: dict[tuple[str, int, int], int] = {}  # log offsets the server confirmed
        self.timed: dict[tuple[str, int, int], int] = {}  # log-time sizes the server has
        self.log_times = True  # False once a server of the last release refused them
        self.last_contact = clock()
        self.acted = False  # the last turn launched or stopped something: report at once
        self.stop_event = threading.Event()
        #: this start's container runtime (`host.container_label`), until a sync delivered it
        self.runtime_report: str | None = container_label(
            self.backend.containers)[LABEL_CONTAINER_RUNTIME]
        self.gpu = GpuReporter(settings.gpu_probe_interval_s, facts.gpus, facts.gpu_model,
                               known_answer=KnownAnswerSchedule(
                                   settings.known_answer_interval_s, facts.gpus))
        self.spot = SpotReporter(SpotWatcher(settings.spot_notice_url,
                                             interval_s=settings.spot_poll_s),
                                 lambda n: self.client.notice(self._credential(), n),
                                 (Unreachable, Refused)) if settings.spot_notice_url else None

    # --- joining ----------------------------------------------------------------------------------

    def credentials(self) -> str:
        """The node credential: from the data dir, else by spending the join token (once)."""
        path = self.s.data_dir / NODE_FILE
        saved = read_json(path)
        if saved is not None and saved.get("node_id") == self.s.node_id:
            return str(saved["credential"])
        if not self.s.join_token:
            raise Refused(401, "unauthorized", f"no credential in {path} and no --join-token "
                          "to get one: ask an admin for a join token (corral agent-tokens create)")
        while True:
            try:
                joined = self.client.join(self.s.join_token, self.s.node_id, self.facts)
                break
            except Unreachable as e:
                self._wait(e)
        write_json_atomic(path, {"node_id": joined.node_id, "credential": joined.credential},
                          mode=0o600)
        log.info("joined as node %s", joined.node_id)
        return joined.credential

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Until `stop_event`: the workers keep running when the agent stops (a new agent over
        the same data dir takes them over, as long as it comes back within the lease)."""
        self.credential = self.credentials()
        while not self.stop_event.is_set():
            self.turn()

    def turn(self) -> SyncOut | None:
        """One round: renew the lease, look at the workers, ship their logs, sync, act."""
        self.lease.touch()
        statuses = self.backend.poll(self.clock())
        health = self.gpu.report(self.clock(), self._busy_devices(statuses))
        use = self.gpu.use(self.clock())
        try:
            self._ship_logs(statuses)
            out = self.client.sync(self._credential(), SyncIn(
                known_seq=self.seq, wait_s=self._wait_s(statuses),
                workers=self._reports(statuses), gpu_health=health, gpu_use=use,
                container_runtime=self.runtime_report))
        except Unreachable as e:
            self._out_of_contact()
            self._wait(e)
            return None
        except Refused as e:
            if e.status == 422 and "gpu_use" in e.message and use is not None:
                log.warning("the server does not take measured GPU use (an older release): "
                            "not sent again")
                self.gpu.sampling = False
                return None
            if e.status != 422 or "container_runtime" not in e.message or not self.runtime_report:
                raise
            log.warning("the server does not take the container runtime at sync (an older "
                        "release): it keeps the one this node joined with")
            self.runtime_report = None
            return None
        self.runtime_report = None  # delivered: once per start
        self.gpu.delivered(health)
        self.gpu.use_delivered(use)
        self.last_contact = self.clock()
        self.s.backoff.reset()
        if self.spot is not None:  # the host's spot warning, reported before acting
            self.spot.turn(self.clock(), datetime.now(UTC))
        self.seq = out.seq
        self.apply(out)
        self.relayed.start(out.execs, out.tunnels, out.shells)
        return out

    def _busy_devices(self, statuses: list[WorkerStatus]) -> set[int]:
        """This host's devices that a worker not yet ended holds (the known-answer test
        leaves them alone)."""
        live = {(s.workload_id, s.attempt, s.worker) for s in statuses if not s.state.ended}
        attempts = self.backend._attempts  # the agent's own backend
        return {d for (wid, attempt), rec in attempts.items() for a in rec.spec.assignments
                if a.node_id == self.node.id and (wid, attempt, a.worker) in live
                for d in a.devices}

    def _workdirs_in_use(self) -> set[str]:
        """The archives attempts launched here and not released name (never pruned)."""
        return {rec.spec.workdir for rec in self.backend._attempts.values()
                if rec.spec.workdir and is_archive(rec.spec.workdir)}

    def _credential(self) -> str:
        if self.credential is None:
            self.credential = self.credentials()
        return self.credential

    def _wait_s(self, statuses: list[WorkerStatus]) -> float:
        """No wait when there is news to report next turn (a launch, a stop, a refusal); a short
        one while workers run here (their ends are seen between syncs); else the full wait."""
        if self.refused or self.acted:
            self.acted = False
            return 0.0
        if any(not s.state.ended for s in statuses):
            return min(self.s.poll_wait_s, ACTIVE_WAIT_S)
        return self.s.poll_wait_s

    def _wait(self, why: Exception) -> None:
        delay = self.s.backoff.next_delay()
        log.warning("server unreachable (%s); retrying in %.1f s", why, delay)
        self._sleep_renewing(delay)

    def _sleep_renewing(self, delay: float) -> None:
        """Waits `delay`, renewing the lease at least every quarter lease: the backoff grows
        past the lease (4 s, 8 s against the tests' 4 s lease) while a control plane restarts,
        and a lease renewed only after the wait killed every worker of a live agent, the very
        work that must keep running through the restart."""
        step = max(0.05, self.s.lease_s / 4)
        end = time.monotonic() + delay
        while not self.stop_event.is_set():
            self.lease.touch()
            left = end - time.monotonic()
            if left <= 0:
                break
            self.stop_event.wait(min(step, left))
        self.lease.touch()

    def _out_of_contact(self) -> None:
        after = self.s.self_fence_after_s
        if after > 0 and self.clock() - self.last_contact > after:
            for key in self.backend.launched():  # every attempt this host still runs
                self.backend.stop(*key, 0.0, f"no contact with the server for {after:g} s")

    # --- acting on assignments ----------------------------------------------------------------

    def apply(self, out: SyncOut) -> None:
        by_attempt: dict[Key, list[AssignmentOut]] = {}
        for a in out.assignments:
            by_attempt.setdefault((a.workload_id, a.attempt), []).append(a)
        for key, workers in by_attempt.items():
            self._apply_attempt(key, workers)
        for key in self.backend.launched():
            if key not in by_attempt:
                self._forget(key)

    def _apply_attempt(self, key: Key, workers: list[AssignmentOut]) -> None:
        first = workers[0]
        launched = key in self.backend.launched()
        if all(w.fenced for w in workers):
            if launched:
                self.backend.stop(*key, 0.0, "fenced: the server declared this node lost")
            return
        if not launched and any(w.state != "starting" for w in workers):
            self._lost_records(key, workers)
            return
        if not launched:
            if not self._launch(key, first):
                return
            self.acted = True
        if first.stop_grace_left_s is not None:
            self.backend.stop(*key, first.stop_grace_left_s, first.stop_reason)

    def _lost_records(self, key: Key, workers: list[AssignmentOut]) -> None:
        """The server had reports from this host about an attempt it has no record of (its data
        dir was lost or replaced): never start it again; report what is unfinished as lost."""
        for w in workers:
            if not WorkerState(w.state).ended:
                self.refused[(key[0], key[1], w.worker)] = ReportIn(
                    workload_id=key[0], attempt=key[1], worker=w.worker, state="lost",
                    reason=base.PROCESS_GONE, ended_s_ago=0.0,
                    message=f"the agent on {self.s.node_id} has no record of this worker")

    def _launch(self, key: Key, a: AssignmentOut) -> bool:
        self._rendezvous[key] = (a.master_addr, a.master_port)
        try:
            spec = LaunchSpec.from_record(a.spec)
            # an elastic member's world file on this host (`corral.backends.elastic_world`):
            # before its worker starts where a resize relaunches it, after, once there is a dir
            elastic_world.write_from_env(spec.env)
            self.backend.launch(spec)
            elastic_world.write_from_env(spec.env)
            return True
        except (BackendError, KeyError, TypeError, ValueError, OSError) as e:
            log.warning("cannot launch %s attempt %d here: %s", *key, e)
            for w in spec_workers(a.spec, self.s.node_id):
                self.refused[(key[0], key[1], w)] = ReportIn(
                    workload_id=key[0], attempt=key[1], worker=w, state="failed",
                    reason=base.COMMAND_NOT_FOUND, exit_code=127, ended_s_ago=0.0,
                    message=f"the agent on {self.s.node_id} could not launch it: {e}"[:4096])
            return False

    def _forget(self, key: Key) -> None:
        """An attempt the server no longer assigns here: released (all ended), or unknown to it
        (a record older than the server's memory): end it, then forget it."""
        try:
            self.backend.release(*key)
        except BackendError:
            self.backend.stop(*key, 0.0, "no longer assigned to this node")
        self._rendezvous.pop(key, None)
        for k in [k for k in self.shipped if k[:2] == key]:
            del self.shipped[k]
        for k in [k for k in self.timed if k[:2] == key]:
            del self.timed[k]

    def _rendezvous_of(self, spec: LaunchSpec) -> tuple[str, int]:
        return self._rendezvous[(spec.workload_id, spec.attempt)]

    # --- reporting ------------------------------------------------------------------------------

    def _reports(self, statuses: list[WorkerStatus]) -> list[ReportIn]:
        now = self.clock()
        out = [self._report(s, now) for s in statuses]
        out += self.refused.values()
        self.refused = {}
        return out

    def _report(self, s: WorkerStatus, now: float) -> ReportIn:
        state, reason, message = s.state, s.reason, s.message
        if state.ended and self._lease_expired(s):
            # killed by its runner because this agent was gone: the node failed, not the job
            state, reason = WorkerState.LOST, base.NODE_LOST
        progress = None if state.ended else self.backend.progress(
            s.workload_id, s.attempt).get(s.worker)
        return ReportIn(
            workload_id=s.workload_id, attempt=s.attempt, worker=s.worker, state=str(state),
            reason=reason[:64], exit_code=s.exit_code, message=message[:4096],
            ended_s_ago=None if s.finished_at is None else max(0.0, now - s.finished_at),
            progress=None if progress is None else ProgressIn(
                steps=progress.steps, steps_per_s=progress.steps_per_s,
                total_steps=progress.total_steps))

    def _lease_expired(self, s: WorkerStatus) -> bool:
        record = read_json(self.backend.work_dir / s.workload_id / str(s.attempt)
                           / f"worker-{s.worker}" / EXIT_RECORD)
        return record is not None and record.get("reason") == LEASE_EXPIRED

    def _ship_logs(self, statuses: list[WorkerStatus]) -> None:
        chunks = []
        for s in statuses:
            key = (s.workload_id, s.attempt, s.worker)
            offset = self.shipped.get(key, 0)
            data = b""
            times = self._new_log_times(key)
            if key in self.shipped:  # the first chunk of a worker asks where the server is
                data, _ = self.backend.read_logs(s.workload_id, s.worker, offset,
                                                 attempt=s.attempt, max_bytes=LOG_CHUNK)
                if not data and not times:
                    continue
            chunks.append((*key, offset, data, times))
        for i in range(0, len(chunks), 32):
            batch = chunks[i:i + 32]
            confirmed = self._ship_batch(batch)
            for (w, a, k, _, _, times), nxt in zip(batch, confirmed, strict=True):
                self.shipped[(w, a, k)] = nxt
                if times:
                    self.timed[(w, a, k)] = times[-1][0]

    def _ship_batch(self, batch: list[Any]) -> list[int]:
        """A server of the last release refuses the chunks' `times` (422, extra=forbid): then
        ship the bytes alone from now on (`corral logs --timestamps` undated there)."""
        try:
            return self.client.ship_logs(self._credential(), batch)
        except Refused as e:
            if e.status != 422 or "times" not in e.message or not self.log_times:
                raise
        log.warning("the server does not take log times (an older release): shipping logs "
                    "without them")
        self.log_times = False
        return self.client.ship_logs(self._credential(), [(*c[:5], []) for c in batch])

    def _new_log_times(self, key: tuple[str, int, int]) -> list[tuple[int, float]]:
        """The runner's samples (`log-times`: the log held SIZE bytes at TIME) beyond those
        shipped, as (size, seconds ago): the server places them on its own clock. After an
        agent restart all are sent again; the server keeps only sizes beyond its own."""
        path = (self.backend.work_dir / key[0] / str(key[1]) / f"worker-{key[2]}"
                / local_runner.LOG_TIMES)
        if not self.log_times:
            return []
        done, now = self.timed.get(key, -1), self.clock()
        return [(size, max(0.0, now - at)) for size, at in read_samples(path)
                if size > done][:4096]


def spec_workers(record: dict[str, object], node_id: str) -> list[int]:
    """The worker indices a spec record places on `node_id`."""
    assignments = record.get("assignments")
    if not isinstance(assignments, list):
        return []
    return [int(a["worker"]) for a in assignments
            if isinstance(a, dict) and a.get("node_id") == node_id]


def dumps_settings(s: AgentSettings) -> str:
    """For the log line at start: never the join token."""
    return json.dumps({"server": s.server, "node_id": s.node_id, "data_dir": str(s.data_dir),
                       "lease_s": s.lease_s, "poll_wait_s": s.poll_wait_s})
