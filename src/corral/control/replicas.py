"""Service replicas: what a replica's end means, and how long it waits before it comes back.

A service is kept serving. A replica that ends on its own (exit 0, a crash, a lost node, a
launch the backend refused for a passing reason) goes back to pending with attempt + 1, always:
there is no `max_restarts` for a replica and no `succeeded`. Only a stop corral asked for ends
one for good (cancel, scale down), or moves it (eviction, drain).

A replica that keeps ending must not spin the loop, so it waits before it is placed again, the
way Kubernetes' CrashLoopBackOff does: `restart_backoff`, doubled for every quick end in a row,
capped at `MAX_BACKOFF_S`. `restart_count` is that streak: a replica that served for at least
`STABLE_S` before it ended starts over at one, so a replica that dies once a day waits
`restart_backoff`, not ten minutes.

    restart_backoff 2 s, three quick crashes in a row: waits 2 s, 4 s, 8 s
    then it serves 20 minutes and exits: waits 2 s again (streak 1)

Ports: two live replicas given one port on one host (`replace_port_clashes`) -> the newer one
is replaced by a new replica row, which gets another port, with a PortInUse event saying why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from sqlalchemy import Connection

from corral.backends.base import WorkerStatus
from corral.control import lifecycle as L
from corral.control.endpoints import PORT_SPAN, Route, port_base
from corral.control.lifecycle import State
from corral.control.scaling import add_replicas, drain, load_service, rolling_out
from corral.control.services import PORT_IN_USE
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["MAX_BACKOFF_S", "PORT_IN_USE", "REPLICA_RESTARTING", "STABLE_S", "backoff_s",
           "replace_port_clashes", "restart", "restart_after"]

#: the reason code of a replica going back to pending after it ended on its own
REPLICA_RESTARTING: Final = "ReplicaRestarting"
MAX_BACKOFF_S: Final = 300.0
#: a replica that ran this long before it ended was serving, not crash-looping
STABLE_S: Final = 600.0


def streak(rec: WorkloadRecord, now: float) -> int:
    """Quick ends in a row before this one (the backoff's exponent)."""
    if rec.started_at is not None and now - rec.started_at >= STABLE_S:
        return 0
    return rec.restart_count


def backoff_s(spec: WorkloadSpec, quick_ends: int) -> float:
    """restart_backoff x 2 per earlier quick end, capped at MAX_BACKOFF_S."""
    return float(min(MAX_BACKOFF_S, spec.restart_backoff * 2 ** min(quick_ends, 30)))


def restart(conn: Connection, rec: WorkloadRecord, spec: WorkloadSpec, now: float,
            statuses: Sequence[WorkerStatus], exit_code: int | None) -> bool:
    """The replica's worker ended on its own (every status is ended; none when it never ran)."""
    if not statuses:
        what = "ended before it started"
    elif exit_code == 0:
        what = "exited 0"
    elif exit_code is not None:
        what = f"exited with code {exit_code}"
    else:
        what = f"was {statuses[0].state} ({statuses[0].reason})"
    cause = "exited" if statuses and all(s.exit_code is not None for s in statuses) else "lost"
    message = f"replica {what}; a service is kept serving"
    if rec.stop_reason == L.LIVENESS_FAILED:  # corral stopped it: say why
        cause, message = "liveness", f"{rec.stop_message}; a service is kept serving"
    return restart_after(conn, rec, spec, now, cause=cause, exit_code=exit_code,
                         message=message)


def restart_after(conn: Connection, rec: WorkloadRecord, spec: WorkloadSpec, now: float, *,
                  cause: str, message: str, exit_code: int | None = None) -> bool:
    """Back to pending with attempt + 1 after the backoff; never `failed`."""
    quick = streak(rec, now)
    delay = backoff_s(spec, quick)
    loop = f" (crash loop: {quick + 1} quick ends in a row)" if quick else ""
    return L.transition(
        conn, rec, State.PENDING, reason=REPLICA_RESTARTING,
        message=f"{message}; restarting in {delay:g}s{loop}", now=now,
        data={"cause": cause, "backoff_s": delay}, attempt=rec.attempt + 1,
        restart_count=quick + 1, not_before=now + delay, stop_reason=None, stop_message="",
        started_at=None, exit_code=exit_code)




def replace_port_clashes(store: Store, found: Sequence[Route],
                         records: Mapping[str, WorkloadRecord], now: float) -> int:
    """Replace every live replica given the host and port of an older live one.

    A replica's port is a function of its row (`endpoints.port_of`: PORT_BASE + seq mod
    PORT_SPAN), so two replicas whose seqs differ by a multiple of PORT_SPAN get the same port,
    and on one host the later one cannot bind it: it would crash-loop with nothing to say why.
    The older one (the lower seq) keeps the port; the newer one is drained (reason Replaced) and
    a new replica row takes its place: a new seq, so another port. Both the replica and its
    service get a PortInUse event naming the port and the replica that holds it. During a
    rollout an old-spec replica is only drained (the rollout restores the count): a new row of
    the old spec would read as the newest spec. Returns the replicas replaced."""
    by_url: dict[str, list[WorkloadRecord]] = {}
    for r in found:
        rec = records.get(r.replica)
        if rec is not None and rec.stop_reason is None:
            by_url.setdefault(r.url, []).append(rec)
    done = 0
    for url, holders in sorted(by_url.items()):
        keeper, *others = sorted(holders, key=lambda rec: rec.seq)
        for rec in others:
            done += _replace(store, rec, keeper, url, now)
    return done


def _replace(store: Store, rec: WorkloadRecord, keeper: WorkloadRecord, url: str,
             now: float) -> int:
    message = (f"{url} is also given to {keeper.id} (a replica's port is {port_base()} + its "
               f"row number mod {PORT_SPAN}): replaced by a new replica on another port")
    with store.write() as conn:
        status, _ = load_service(conn, rec.group_id)
        if not drain(conn, rec, now, message, L.REPLACED):
            return 0  # the row moved meanwhile: the next tick looks again
        live = [r for _, r in status.live() if r.id != rec.id]
        newest = live[-1].spec if live else rec.spec
        if not rolling_out(status) or rec.spec == newest:
            add_replicas(conn, status, 1, now, message, spec=rec.spec)
        for wid in (rec.id, rec.group_id):
            W.append_event(conn, at=now, kind="info", reason=PORT_IN_USE, message=message,
                           workload_id=wid, attempt=rec.attempt if wid == rec.id else 0)
    return 1
