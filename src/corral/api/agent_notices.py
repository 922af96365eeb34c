"""POST /agent/v1/notice: a spot interruption notice an agent read on its host (issue 11).

    POST /agent/v1/notice   Bearer <node credential>   {action, time, seconds_left}
                                                       -> {node_id, cordoned, stopped}

The agent polls EC2's instance metadata (`corral.agent.spot`) and sends the first notice here.
The control plane acts in this request, as for a notice the provider's API gave
(`corral.control.autoscale.act_on_host_notice`): the node is cordoned, the current attempt of
every workload on it is stopped with the preemption contract (`SpotInterrupted`: SIGTERM, the
grace, SIGKILL; requeued from its checkpoint without spending a restart) and the notice is in
the audit log, where the autoscaler's next pass reads it (another zone or provider preferred
for the stopped work, the instance drained and returned). Sending it twice stops nothing twice.
A separate router from `corral.api.agents` so the two files change independently; it uses the
same node-credential check.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from corral.agent.spot import NoticeIn, NoticeOut
from corral.api.agents import NodeCaller
from corral.api.context import ApiContext, context
from corral.control.autoscale import act_on_host_notice
from corral.sdk import models as M

__all__ = ["router"]

router = APIRouter(prefix="/agent/v1", tags=["agents"])
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": M.ErrorBody} for s in (401, 422)}


@router.post("/notice", response_model=NoticeOut, responses=_ERRORS)
def notice(body: NoticeIn, node: NodeCaller, ctx: Ctx) -> NoticeOut:
    """The host's spot interruption notice: cordon the node, stop its work to its checkpoint."""
    with ctx.store.write() as conn:
        stopped = act_on_host_notice(conn, ctx.clock.now(), node.node_id,
                                     instance_id=node.instance_id, action=body.action,
                                     seconds_left=body.seconds_left)
    return NoticeOut(node_id=node.node_id, cordoned=True, stopped=stopped)
