"""Readiness probes: which running service replicas take traffic.

Every `period_s` the loop GETs `http://<replica host>:<port><path>` of each running replica
whose spec has `readiness` (`corral.spec.service.ReadinessProbe`); 2xx and 3xx pass. After
`success_threshold` passes in a row the replica's reason becomes ReplicaReady (it is `ready`,
`corral.control.services`); after `failure_threshold` failures in a row a ready one becomes
ReplicaNotReady (no new traffic; its process keeps running, and is restarted only if it exits).
Both are written on the row (and an event), so every API replica and a gateway see the same.

`liveness` is probed the same way, from `initial_delay_s` after the replica started; after
`failure_threshold` failures in a row the replica gets the stop request LivenessFailed and is
restarted once it has stopped (`corral.control.replicas`: a hung server that holds its port).

Without `readiness`, a replica takes traffic as soon as its process runs (the gateway retries
a refused connection on another replica), but a rolling update must not drain an old replica
for a new one that cannot serve yet: every `TCP_PERIOD_S` the loop opens a TCP connection to
such a replica's port, and the first one accepted writes ReplicaReady ("port 22545 accepts TCP
connections"), which is what `corral.control.rollout` counts (`services.serving`). It is checked
once per attempt: after that, an exit restarts the replica and the check begins again.

A passed readiness probe or TCP check counts only when the replica's own process listens on its
port (`corral.control.port_owners`, on the local backend): the port is 20000 + seq, and another
process on the host can hold it and answer. Otherwise the row's reason becomes PortInUse naming
the holder (not ready, no traffic: `corral.control.services.replica_state`), with an event.
Checked until the replica is ready (a scan of /proc, ~7 ms): then its process holds the port and
no other can bind it; an exit of that process restarts the replica, which is checked again.

Counts are kept in memory per (replica, attempt): a restart or a new leader starts over, which
only delays readiness by one period. The probes of one step run in parallel threads, each
bounded by its `timeout_s`, so a hung replica costs the loop one timeout, not one per replica.
"""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from corral.control import lifecycle as L
from corral.control.endpoints import host_of, live_routes, port_of
from corral.control.live_state import LiveState
from corral.control.port_owners import PortOwner
from corral.control.replicas import PORT_IN_USE, replace_port_clashes
from corral.control.services import REPLICA_NOT_READY, REPLICA_READY
from corral.spec.service import ReadinessProbe
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["TCP_PERIOD_S", "HttpGet", "ReadinessProber", "TcpConnect", "http_get", "tcp_connect"]

log = logging.getLogger("corral.control.probes")

#: (url, timeout_s) -> passed
HttpGet = Callable[[str, float], bool]
#: (host, port, timeout_s) -> the connection was accepted
TcpConnect = Callable[[str, int, float], bool]
_MAX_PARALLEL = 32
#: between two TCP checks of a replica without a readiness probe
TCP_PERIOD_S = 1.0


def tcp_connect(host: str, port: int, timeout_s: float) -> bool:
    """Whether `host:port` accepts a TCP connection (closed at once, nothing sent)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:  # refused, unreachable, timed out
        return False


def http_get(url: str, timeout_s: float) -> bool:
    """GET `url`; True for 2xx and 3xx (redirects are not followed: a 3xx means it answers)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=timeout_s) as r:
            return 200 <= int(r.status) < 400
    except urllib.error.HTTPError as e:
        return 300 <= e.code < 400
    except (OSError, ValueError):  # refused, reset, timed out, a bad URL
        return False


@dataclass
class _Count:
    passes: int = 0
    failures: int = 0
    next_at: float = 0.0


READINESS, LIVENESS, TCP = "readiness", "liveness", "tcp"
Due = tuple[WorkloadRecord, str, ReadinessProbe, str]  # record, kind, probe, url
#: a TCP check as a probe value (its path unused): one success makes the replica ready
_TCP_PROBE = ReadinessProbe.model_validate({"path": "/", "period_s": TCP_PERIOD_S,
                                            "timeout_s": 1.0})


class ReadinessProber:
    """Readiness and liveness probes of every running service replica that has them."""

    def __init__(self, store: Store, backend_name: str, get: HttpGet = http_get,
                 connect: TcpConnect = tcp_connect, owner: PortOwner | None = None) -> None:
        self.store, self.backend_name, self.get, self.connect = store, backend_name, get, connect
        #: whether the replica's own process holds its port (None: the probe is trusted)
        self.owner = owner
        self._counts: dict[tuple[str, int, str], _Count] = {}
        self._probes: dict[tuple[str, str], tuple[object, ReadinessProbe]] = {}

    def step(self, now: float, live: LiveState) -> int:
        """Probe the replicas that are due; return how many rows changed (ready or not). First,
        a replica given the port of an older one on its host is replaced (it cannot bind)."""
        found = live_routes(live, self.backend_name)
        changed = 0
        if len({r.url for r in found}) < len(found):
            changed = replace_port_clashes(self.store, found, live.records, now)
        return changed + self._probe_due(now, live)

    def _probe_due(self, now: float, live: LiveState) -> int:
        due = list(self._due(now, live))
        if self._counts:  # forget ended attempts: O(probed replicas), not O(every workload)
            records = live.records
            self._counts = {k: c for k, c in self._counts.items()
                            if (r := records.get(k[0])) is not None and r.attempt == k[1]}
        if not due:
            return 0
        with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(due))) as pool:
            passed = list(pool.map(self._check, due))
        return sum(self._record(rec, kind, probe, ok, now) for (rec, kind, probe, _), ok in zip(
            due, passed, strict=True))

    def _check(self, due: Due) -> bool | str:
        """Passed, failed, or a passed probe answered by a foreign process (why, a string)."""
        rec, kind, probe, url = due
        if kind == TCP:
            host, _, port = url.rpartition(":")
            ok = self.connect(host, int(port), probe.timeout_s)
        else:
            ok = self.get(url, probe.timeout_s)
        if not ok or kind == LIVENESS or self.owner is None or rec.reason_code == REPLICA_READY:
            return ok  # ready: its own process holds the port (checked), no one else can bind it
        return self.owner(rec, port_of(rec)) or True

    def _kinds(self, rec: WorkloadRecord) -> list[str]:
        """What to check on a running replica: its probes; without a readiness probe, a TCP
        connection until one was accepted (`ReplicaReady`)."""
        kinds = [k for k in (READINESS, LIVENESS) if k in rec.spec]
        if READINESS not in rec.spec and rec.reason_code != REPLICA_READY:
            kinds.append(TCP)
        return kinds

    def _due(self, now: float, live: LiveState) -> Iterable[Due]:
        for rec in live.records.values():
            if rec.kind != "service" or rec.state != "running" or rec.stop_reason is not None:
                continue
            kinds = self._kinds(rec)
            assignment = live.assignments.get(rec.id) if kinds else None
            if not assignment:
                continue
            host = host_of(assignment[0].node_id, self.backend_name)
            for kind in kinds:
                if kind == TCP:
                    count = self._counts.setdefault((rec.id, rec.attempt, kind), _Count())
                    if now >= count.next_at:
                        count.next_at = now + TCP_PERIOD_S
                        yield rec, kind, _TCP_PROBE, f"{host}:{port_of(rec)}"
                    continue
                probe = self._probe(rec, kind)
                count = self._counts.setdefault((rec.id, rec.attempt, kind), _Count())
                ran = now - (rec.started_at if rec.started_at is not None else now)
                if now < count.next_at or ran < probe.initial_delay_s:
                    continue
                count.next_at = now + probe.period_s
                yield rec, kind, probe, f"http://{host}:{probe.port or port_of(rec)}{probe.path}"

    def _probe(self, rec: WorkloadRecord, kind: str) -> ReadinessProbe:
        raw = rec.spec[kind]
        hit = self._probes.get((rec.id, kind))
        if hit is None or hit[0] != raw:
            hit = self._probes[(rec.id, kind)] = (raw, ReadinessProbe.model_validate(raw))
        return hit[1]

    def _record(self, rec: WorkloadRecord, kind: str, probe: ReadinessProbe, ok: bool | str,
                now: float) -> int:
        count = self._counts[(rec.id, rec.attempt, kind)]
        if isinstance(ok, str):  # answered, but not by the replica: never ready on it
            count.passes, count.failures = 0, count.failures + 1
            if rec.reason_code == PORT_IN_USE and rec.reason_message == ok:
                return 0
            return self._write(rec, PORT_IN_USE, ok, now)
        count.passes, count.failures = (count.passes + 1, 0) if ok else (0, count.failures + 1)
        if kind == TCP:
            return self._write(rec, REPLICA_READY, f"port {port_of(rec)} accepts TCP "
                               "connections (no readiness probe): serving", now) if ok else 0
        if kind == LIVENESS:
            if ok or count.failures < probe.failure_threshold:
                return 0
            return self._restart(rec, f"liveness probe GET {probe.path} failed "
                                 f"{count.failures} times in a row: restarting it", now)
        if ok and count.passes >= probe.success_threshold and rec.reason_code != REPLICA_READY:
            return self._write(rec, REPLICA_READY, f"readiness probe GET {probe.path} passed "
                               f"{count.passes} time(s) in a row: taking traffic", now)
        if (not ok and count.failures >= probe.failure_threshold
                and rec.reason_code == REPLICA_READY):
            return self._write(rec, REPLICA_NOT_READY, f"readiness probe GET {probe.path} "
                               f"failed {count.failures} times in a row: no new traffic", now)
        return 0

    def _restart(self, rec: WorkloadRecord, message: str, now: float) -> int:
        with self.store.write() as conn:
            if not W.update_versioned(conn, rec.id, rec.version, stop_reason=L.LIVENESS_FAILED,
                                      stop_message=message):
                return 0
            W.append_event(conn, at=now, kind="info", reason=L.LIVENESS_FAILED, message=message,
                           workload_id=rec.id, attempt=rec.attempt)
        return 1

    def _write(self, rec: WorkloadRecord, code: str, message: str, now: float) -> int:
        with self.store.write() as conn:
            if not W.update_versioned(conn, rec.id, rec.version, reason_code=code,
                                      reason_message=message):
                return 0  # the row moved (stopped, ended): the next probe decides again
            W.append_event(conn, at=now, kind="info", reason=code, message=message,
                           workload_id=rec.id, attempt=rec.attempt)
        return 1
