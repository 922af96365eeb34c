"""The live inputs and outputs of the spot rule (`corral.autoscale.spot`): how each interrupted
workload checkpoints, and the sentence of each verdict, written to the workload's events.

    an interruption acted on (a provider's notice, or one read on the host; autoscale.py)
        -> SpotInputs.interrupted(ids)         remembered: to read, to tell
    the first pass of a new leader, after learn:
        SpotInputs.resume(store, state, ...)   each live workload's interruptions (count,
                                               places) from the audit records, its
                                               checkpointing read: weighed again, not told
    each pass, before the decision:
        SpotInputs.learn(store, ...)           ONE read of the rows interrupted since the last
                                               pass; their stored `checkpoint:` decoded alone;
                                               the providers' recorded interruptions
                                               (spot_rates.py; none read in a pass the
                                               autoscaler knows has none new)
        SpotInputs.weighing(config, ...)       autoscaler.spot_risk, estimated for a provider
                                               that offers spot and has none (spot_rates.py)
        PoolView.checkpoints = SpotInputs.known  (id -> Checkpointing; absent: it declared none,
                                               and spot.py's count rule applies)
    after the decision:
        SpotInputs.tell(...)                   each interrupted workload weighed in it: an event
                                               `SpotKept` or `OnDemandOnly` with spot.verdict's
                                               sentence (once per interruption)

Cost grows with the interruptions, not with the pool: only the specs of interrupted work are
read (the policy asks for no other: `spot.weigh_interrupted` weighs interrupted work only),
each once per interruption, and the snapshot is looked through only in a pass that gave a
verdict. What is kept is as long-lived as `AutoscalerState.interruptions` (per workload
interrupted, in memory). A restart forgets neither: a new leader's first read of the audit log
(spot_rates.py, which it does anyway for the providers' rates) also gives each workload's
interruptions and places, and `resume` puts those of live workloads back in the state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import Connection, select

from corral.autoscale import spot as SP
from corral.autoscale.pool import AutoscalerConfig, PoolView
from corral.autoscale.state import AutoscalerState, Interruptions
from corral.control.spot_rates import SpotRates
from corral.core.model import ClusterState
from corral.providers.base import Instance, Offer
from corral.spec.checkpoint import CheckpointSpec
from corral.spec.quantities import parse_duration_s
from corral.store import Store
from corral.store import workloads as W
from corral.store.schema import Event

__all__ = ["ON_DEMAND_ONLY", "SPOT_KEPT", "SpotInputs", "checkpointing"]

log = logging.getLogger(__name__)
#: event reasons (kind "info") of the verdict on interrupted work
SPOT_KEPT: Final = "SpotKept"
ON_DEMAND_ONLY: Final = "OnDemandOnly"


def checkpointing(body: Mapping[str, Any]) -> SP.Checkpointing | None:
    """How a stored spec says it checkpoints (None: it says nothing, or what it says cannot be
    read: the count rule then applies, as before the field existed). A checkpoint on notice
    longer than its own `preemption_grace` cannot be written: it is killed first."""
    raw = body.get("checkpoint")
    if raw is None:
        return None
    try:
        c = CheckpointSpec.model_validate(raw)
        grace = body.get("preemption_grace")
        grace_s = None if grace is None else parse_duration_s(grace)
    except (ValidationError, ValueError) as e:  # stored by another corral: not a reason to stop
        log.warning("unreadable stored checkpoint %r ignored: %s", raw, e)
        return None
    on_notice = c.on_notice if grace_s is None or c.on_notice is None \
        or c.on_notice <= grace_s else None
    if c.every is None and on_notice is None:
        return SP.Checkpointing()  # it says it checkpoints on notice only, and cannot
    return SP.Checkpointing(interval_s=c.every, write_s=on_notice)


@dataclass
class SpotInputs:
    #: how interrupted workloads checkpoint, by id (absent: they declared nothing)
    known: dict[str, SP.Checkpointing] = field(default_factory=dict)
    unread: set[str] = field(default_factory=set)  # interrupted, stored spec not read yet
    untold: set[str] = field(default_factory=set)  # interrupted, verdict not written yet
    #: interruptions and spot time per provider, for those without autoscaler.spot_risk
    rates: SpotRates = field(default_factory=SpotRates)

    def interrupted(self, workload_ids: Iterable[str]) -> None:
        ids = set(workload_ids)
        self.unread |= ids
        self.untold |= ids

    def learn(self, store: Store, listed: Iterable[Instance], unlisted: Iterable[str],
              now: float, *, read: bool = True) -> None:
        """Read how the workloads interrupted since the last call checkpoint, and the
        providers' interruptions and spot time recorded since (spot_rates.py; `read` False:
        the caller knows no record was written since, and the audit log is not read)."""
        self.rates.learn(store, listed, unlisted, now, read=read)
        self._read(store)

    def resume(self, store: Store, state: AutoscalerState,
               cluster: ClusterState) -> AutoscalerState:
        """Once, after the first `learn`: each workload still live that the records say was
        interrupted gets its count and places back (a restart forgot them), and is weighed
        again at this decision with its checkpointing read now; no verdict event is written
        again. The records are the whole truth (every interruption acted on is recorded, this
        pass's too), so they replace what this pass put in `state`."""
        stopped = self.rates.take_stopped()
        if not stopped:
            return state
        live = {w.id for w in cluster.workloads}
        back = {wid: Interruptions(len(p), tuple(x for x in p if x is not None))
                for wid, p in stopped.items() if wid in live}
        if not back:
            return state
        self.unread |= set(back)
        self._read(store)
        log.info("spot interruptions of %d workload(s) read back from the audit log", len(back))
        return replace(state, interruptions=MappingProxyType({**state.interruptions, **back}))

    def _read(self, store: Store) -> None:
        """How the workloads in `unread` checkpoint, in one read of their stored specs."""
        if not self.unread:
            return
        with store.read() as conn:
            rows = W.get_workloads(conn, sorted(self.unread))
        for r in rows:
            ck = checkpointing(r.spec)
            if ck is None:
                self.known.pop(r.id, None)
            else:
                self.known[r.id] = ck
        self.unread.clear()

    def weighing(self, config: AutoscalerConfig, offers: Sequence[Offer], every_s: float,
                 now: float) -> AutoscalerConfig:
        """The config the decision weighs with: `spot_risk` estimated where not given."""
        return self.rates.weighing(config, offers, every_s, now)

    def tell(self, store: Store, now: float, state: AutoscalerState, view: PoolView,
             config: AutoscalerConfig, cluster: ClusterState) -> list[tuple[str, bool, str]]:
        """An event for each interrupted workload the last decision weighed: whether it keeps
        spot and why. Returns (workload id, keeps spot, sentence) of each."""
        weighed = {wid: e.keeps_spot for wid in self.untold
                   if (e := state.interruptions.get(wid)) is not None
                   and e.keeps_spot is not None}
        if not weighed:
            return []
        self.untold -= set(weighed)
        offers = [o for o in view.offers if o.provider not in view.retiring]  # as decide's
        out = []
        for w in cluster.workloads:
            if w.id in weighed:
                keep, why = SP.verdict(w, state.interruptions[w.id].count, self.known.get(w.id),
                                       offers, config, SP.usable_now(state, w, now))
                # the sentence is recomputed; the decision's verdict is the one that counts
                out.append((w.id, bool(weighed[w.id]), why if keep == weighed[w.id] else ""))
        with store.write() as conn:
            attempts = {r.id: r.attempt for r in W.get_workloads(conn, [x[0] for x in out])}
            events = [{"at": now, "kind": "info", "reason": SPOT_KEPT if keep else ON_DEMAND_ONLY,
                       "workload_id": wid, "attempt": attempts.get(wid, 0),
                       "message": ("may use spot again: " if keep else
                                   "on-demand only from now on: ")
                       + (why or "weighed at its last interruption")} for wid, keep, why in out]
            # a new leader weighs again what its predecessor told (a host's notice read back,
            # `resume`): the same verdict on the same attempt (the same interruption: each
            # one requeues the work as a new attempt) is not told twice
            W.append_events(conn, [e for e in events if _last_verdict(conn, e["workload_id"])
                                   != (e["reason"], e["message"], e["attempt"])])
        return out


def _last_verdict(conn: Connection, workload_id: str) -> tuple[str, str, int] | None:
    row = conn.execute(select(Event.reason, Event.message, Event.attempt)
                       .where(Event.workload_id == workload_id,
                              Event.reason.in_((SPOT_KEPT, ON_DEMAND_ONLY)))
                       .order_by(Event.id.desc()).limit(1)).first()
    return None if row is None else (row.reason, row.message, row.attempt)
