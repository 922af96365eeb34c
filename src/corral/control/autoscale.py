"""The pool autoscaler in the control plane: the policy's inputs read, its decisions applied.

    every `every_s` (a step that comes sooner does nothing):
      offers and instances   <- each renting provider (a provider that fails is skipped, logged)
      instance -> node       <- the agents' registrations (an agent reports its instance id)
      waiting work + reasons <- the last plan and the loop's in-memory state
      node use, idle since   <- running work per node (idle since: kept here)
      corral.autoscale.pool.decide(...)  (pure)
      launch      -> provider.launch(offer, n, user_data=<starts corral agent>, tags=...)
                     a ProviderError backs the offer off (AutoscalerState) and is recorded
      drain       -> the node is cordoned (nothing new lands there)
      terminate   -> provider.terminate([...])
      every decision -> the audit log (actor "autoscaler", action "autoscale.<what>")

No capacity leaks: every instance with this cluster's tag is listed at each pass; one that has
not joined after `join_timeout_s` is terminated by the policy, whether this process launched it
or a predecessor did (a restart loses the backoff memory only), and a drained idle one is
terminated. Network calls happen outside any database transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from corral.autoscale.pool import (
    AutoscalerConfig,
    Budget,
    Decisions,
    NodeUse,
    PoolView,
    ProviderLimits,
    Waiting,
    decide,
)
from corral.autoscale.state import AutoscalerState
from corral.core.model import ClusterState
from corral.core.plan import Plan
from corral.providers.base import CapacityState, Instance, Offer, Provider, required_tags
from corral.providers.bootstrap import agent_user_data
from corral.providers.errors import ProviderError
from corral.store import Store, audit
from corral.store import pool as P

__all__ = ["PoolAutoscaler"]

log = logging.getLogger(__name__)
ACTOR = "autoscaler"


@dataclass
class PoolAutoscaler:
    store: Store
    providers: Mapping[str, Provider]
    cluster_id: str
    server_url: str
    join_token: Callable[[int], str]  # a join token good for this many joins (short-lived)
    config: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    limits: Mapping[str, ProviderLimits] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    every_s: float = 30.0
    state: AutoscalerState = field(default_factory=AutoscalerState)
    #: instance id -> node id, for instances whose agent joined (from the agents' table)
    joined: Callable[[Sequence[str]], Mapping[str, str]] | None = None
    last_at: float | None = None
    last_plan: Plan | None = None
    idle_since: dict[str, float] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)
    owner: dict[str, str] = field(default_factory=dict)  # instance id -> provider name

    def step(self, now: float, plan: Plan | None,
             cluster: Callable[[], ClusterState]) -> Decisions | None:
        """Decide and act when `every_s` passed since the last pass; else only remember `plan`."""
        if plan is not None:
            self.last_plan = plan
        if self.last_at is not None and now - self.last_at < self.every_s:
            return None
        self.last_at = now
        state = cluster()
        offers, instances = self._survey(now)
        view = PoolView(self._waiting(state), offers, instances, self._node_use(state, now),
                        self.limits, self.budget)
        decisions = decide(view, self.state, self.config, now)
        self.state = decisions.state
        self._apply(now, decisions)
        return decisions

    # -- reading ----------------------------------------------------------------------------
    def _survey(self, now: float) -> tuple[list[Offer], list[Instance]]:
        offers: list[Offer] = []
        instances: list[Instance] = []
        for name, provider in sorted(self.providers.items()):
            try:
                offers += provider.offers()
                listed = provider.instances()
            except ProviderError as e:
                log.warning("provider %s: %s", name, e)
                self._record(now, "provider_error", name, {"reason": str(e)})
                continue
            instances += listed
            self.owner.update((i.id, name) for i in listed)
        ids = [i.id for i in instances if i.state != CapacityState.TERMINATED]
        nodes = self.joined(ids) if self.joined is not None and ids else {}
        out = []
        for i in instances:
            node = nodes.get(i.id)
            if node is not None and i.state not in (CapacityState.TERMINATING,
                                                    CapacityState.TERMINATED):
                ready = CapacityState.DRAINING if node in self.draining else CapacityState.READY
                i = replace(i, state=ready, node_id=node)
            out.append(i)
        return offers, out

    def _waiting(self, state: ClusterState) -> list[Waiting]:
        plan = self.last_plan
        if plan is None:
            return []
        return [Waiting(w, plan.pending[w.id].code) for w in state.workloads
                if not w.running and w.id in plan.pending]

    def _node_use(self, state: ClusterState, now: float) -> dict[str, NodeUse]:
        running: dict[str, list[int]] = {}
        for w in state.workloads:
            for node in {a.node_id for a in w.assignments}:
                use = running.setdefault(node, [0, 0])
                use[0] += 1
                use[1] += 0 if w.preemptible else 1
        out = {}
        for n in state.nodes:
            count, stable = running.get(n.id, [0, 0])
            if count:
                self.idle_since.pop(n.id, None)
            else:
                self.idle_since.setdefault(n.id, now)
            out[n.id] = NodeUse(count, stable, self.idle_since.get(n.id))
        return out

    # -- acting -----------------------------------------------------------------------------
    def _apply(self, now: float, d: Decisions) -> None:
        for t in d.terminations:
            provider = self.providers.get(self.owner.get(t.instance_id, ""))
            self._record(now, "terminate", t.instance_id, {"reason": t.reason})
            if provider is not None:
                try:
                    provider.terminate([t.instance_id])
                except ProviderError as e:
                    self._record(now, "terminate_failed", t.instance_id, {"reason": str(e)})
        for dr in d.drains:
            with self.store.write() as conn:
                P.set_cordoned(conn, dr.node_id, True)
                audit.record(conn, at=now, actor=ACTOR, action="autoscale.drain",
                             target=dr.node_id, detail={"reason": dr.reason,
                                                        "instance": dr.instance_id})
            self.draining.add(dr.node_id)
        for x in d.launches:
            self._launch(now, x.offer, x.count, x.reason, x.workloads)

    def _launch(self, now: float, offer: Offer, count: int, reason: str,
                workloads: Sequence[str]) -> None:
        provider = self.providers[offer.provider]
        request = f"req-{secrets.token_hex(6)}"
        facts = {"provider": offer.provider, "capacity_kind": str(offer.capacity_kind),
                 "price_per_gpu_hour": f"{offer.price_per_gpu_hour:.6f}",
                 "instance_type": offer.instance_type, "region": offer.region,
                 "zone": offer.zone}
        try:
            launched = provider.launch(
                offer, count, user_data=agent_user_data(self.server_url, self.join_token(count), facts),
                tags=required_tags(self.cluster_id, request, offer.provider))
        except ProviderError as e:
            self.state = self.state.launch_failed(
                offer, e.reason_code, now, base_s=self.config.backoff_base_s,
                max_s=self.config.backoff_max_s, retry_after_s=e.retry_after_s)
            self._record(now, "launch_failed", offer.instance_type,
                         {"reason": str(e), "offer": _offer_detail(offer),
                          "workloads": list(workloads)})
            return
        self.state = self.state.launch_succeeded(offer)
        self._record(now, "launch", ",".join(i.id for i in launched),
                     {"reason": reason, "offer": _offer_detail(offer),
                      "workloads": list(workloads)})

    def _record(self, now: float, what: str, target: str, detail: dict[str, Any]) -> None:
        with self.store.write() as conn:
            audit.record(conn, at=now, actor=ACTOR, action=f"autoscale.{what}",
                         target=target[:200], detail=detail)


def _offer_detail(o: Offer) -> dict[str, Any]:
    return {"provider": o.provider, "instance_type": o.instance_type, "zone": o.zone,
            "capacity_kind": str(o.capacity_kind), "price_per_hour": str(o.price_per_hour),
            "source": o.source, "as_of": o.as_of}
