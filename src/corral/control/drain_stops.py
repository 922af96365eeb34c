"""Which work a drained node's leaving stops, and how: the current attempt of each workload is
asked to stop with the preemption contract (SIGTERM, the grace, SIGKILL) under a stop reason
that requeues it without spending a restart (`corral.control.outcome`).

    SpotInterrupted   a provider's notice, or one an agent read on its host (act_on_host_notice,
                      in the request of `POST /agent/v1/notice`)
    ProviderRemoved   a retiring provider's node, or its removal deadline passed

The pool autoscaler (corral.control.autoscale) decides the drains; this module only writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from corral.store import agents as AG
from corral.store import audit
from corral.store import pool as P
from corral.store import workloads as W

__all__ = ["HOST_NOTICE", "PROVIDER_REMOVED", "SPOT_INTERRUPTED", "act_on_host_notice",
           "stop_work"]

log = logging.getLogger("corral.control.autoscale")
#: stop reasons of work drained by the autoscaler (requeued, not failed: corral.control.outcome)
SPOT_INTERRUPTED = "SpotInterrupted"
PROVIDER_REMOVED = "ProviderRemoved"
#: the audit action of a spot notice an agent read on its host
HOST_NOTICE = "agent.spot_notice"


def act_on_host_notice(conn: Any, now: float, node_id: str, *, instance_id: str, action: str,
                       seconds_left: float) -> list[str]:
    """An agent read a spot interruption notice on its host: cordon its node, stop the current
    attempt of all work there with the preemption contract (`SpotInterrupted`: requeued, no
    restart spent), record `agent.spot_notice`. Returns the ids stopped (none a second time)."""
    _, workers = AG.assignments_for(conn, node_id)
    here = {(w.workload_id, w.attempt) for w in workers if not w.fenced}
    current = [r.id for r in W.get_workloads(conn, sorted({wid for wid, _ in here}))
               if (r.id, r.attempt) in here]
    what = instance_id or node_id
    message = (f"spot interruption of {what} (read on the host: {action}): node {node_id} is "
               f"taken back in {seconds_left:.0f} s; stopping the gang to restart it from its "
               "checkpoint elsewhere")
    P.set_cordoned(conn, node_id, True)
    stopped = stop_work(conn, now, current, SPOT_INTERRUPTED, message, node_id)
    audit.record(conn, at=now, actor="agent", action=HOST_NOTICE, target=node_id,
                 detail={"instance": instance_id, "action": action,
                         "deadline": now + seconds_left, "stopped": stopped})
    log.warning("spot notice on host %s: cordoned, %d stopped", node_id, len(stopped))
    return stopped


def stop_work(conn: Any, now: float, workload_ids: Sequence[str], reason: str, message: str,
              node: str) -> list[str]:
    """Ask these workloads' current attempts to stop (SIGTERM, grace, SIGKILL) with `reason`;
    those already stopping or ended are left alone. Returns the ids stopped."""
    stopped = []
    for rec in W.get_workloads(conn, list(workload_ids)):
        if rec.state not in W.HOLDING_STATES or rec.stop_reason is not None:
            continue
        if W.update_versioned(conn, rec.id, rec.version, stop_reason=reason,
                              stop_message=message):
            W.append_event(conn, at=now, kind="node", reason=reason, subject=node,
                           workload_id=rec.id, attempt=rec.attempt, message=message)
            stopped.append(rec.id)
    return stopped
