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

Counts are kept in memory per (replica, attempt): a restart or a new leader starts over, which
only delays readiness by one period. The probes of one step run in parallel threads, each
bounded by its `timeout_s`, so a hung replica costs the loop one timeout, not one per replica.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from corral.control import lifecycle as L
from corral.control.endpoints import host_of, port_of
from corral.control.live_state import LiveState
from corral.control.services import REPLICA_NOT_READY, REPLICA_READY
from corral.spec.service import ReadinessProbe
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["HttpGet", "ReadinessProber", "http_get"]

log = logging.getLogger("corral.control.probes")

#: (url, timeout_s) -> passed
HttpGet = Callable[[str, float], bool]
_MAX_PARALLEL = 32


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


READINESS, LIVENESS = "readiness", "liveness"
Due = tuple[WorkloadRecord, str, ReadinessProbe, str]  # record, kind, probe, url


class ReadinessProber:
    """Readiness and liveness probes of every running service replica that has them."""

    def __init__(self, store: Store, backend_name: str, get: HttpGet = http_get) -> None:
        self.store, self.backend_name, self.get = store, backend_name, get
        self._counts: dict[tuple[str, int, str], _Count] = {}
        self._probes: dict[tuple[str, str], tuple[object, ReadinessProbe]] = {}

    def step(self, now: float, live: LiveState) -> int:
        """Probe the replicas that are due; return how many rows changed (ready or not)."""
        due = list(self._due(now, live))
        if self._counts:  # forget ended attempts: O(probed replicas), not O(every workload)
            records = live.records
            self._counts = {k: c for k, c in self._counts.items()
                            if (r := records.get(k[0])) is not None and r.attempt == k[1]}
        if not due:
            return 0
        with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(due))) as pool:
            passed = list(pool.map(lambda d: self.get(d[3], d[2].timeout_s), due))
        return sum(self._record(rec, kind, probe, ok, now) for (rec, kind, probe, _), ok in zip(
            due, passed, strict=True))

    def _due(self, now: float, live: LiveState) -> Iterable[Due]:
        for rec in live.records.values():
            if (rec.kind != "service" or rec.state != "running" or rec.stop_reason is not None
                    or not (READINESS in rec.spec or LIVENESS in rec.spec)):
                continue
            assignment = live.assignments.get(rec.id)
            if not assignment:
                continue
            host = host_of(assignment[0].node_id, self.backend_name)
            for kind in (READINESS, LIVENESS):
                if kind not in rec.spec:
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

    def _record(self, rec: WorkloadRecord, kind: str, probe: ReadinessProbe, ok: bool,
                now: float) -> int:
        count = self._counts[(rec.id, rec.attempt, kind)]
        count.passes, count.failures = (count.passes + 1, 0) if ok else (0, count.failures + 1)
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
