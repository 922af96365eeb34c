"""The pool autoscaler in the control plane: the policy's inputs read, its decisions applied.

    every `every_s` (a step that comes sooner does nothing):
      offers and instances   <- each renting provider (a provider that fails is skipped, logged)
      instance -> node       <- the agents' registrations (an agent reports its instance id)
      waiting work + reasons <- the last plan and the loop's in-memory state
      node use, idle since   <- running work per node, stopping work included (the loop's
                                LiveState; idle since: kept here; node_return.py)
      corral.autoscale.pool.decide(...)  (pure)
      launch      -> provider.launch(offer, n, user_data=<starts corral agent>, tags=...)
                     a ProviderError backs the offer off (AutoscalerState) and is recorded
      drain       -> the node is cordoned (nothing new lands there)
      terminate   -> provider.terminate([...])
      every decision -> the audit log (actor "autoscaler", action "autoscale.<what>")
      work no node can run -> what was rented for it, or why nothing, as an event on it

Providers change at run time (`corral providers add/rm`): `reload` is read at every pass and
gives the providers, their limits and the ones being removed ("retiring": drained, each
instance returned once nothing runs on it, then `retired(name)` is called).

A spot interruption (a provider's `Notice`, `corral.providers.base.Interruptible`) drains its
node at once: nothing new lands there, every workload on it is stopped with the preemption
contract (stop reason `SpotInterrupted`: SIGTERM, the grace, then SIGKILL, the deadline in the
message) and is requeued, not failed (`corral.control.outcome`); its gang restarts elsewhere
from its checkpoint, preferring another zone or provider (`AutoscalerState.interrupted`), and
capacity is rented for it if it waits for lack of it. The instance is returned once idle.
The same warning read on the host (the agent polls EC2's instance metadata `spot/instance-action`,
`corral.agent.spot`) arrives through `POST /agent/v1/notice`: `act_on_host_notice` cordons the
node and stops its work the same way at once, in the request, and records `agent.spot_notice`;
the next pass reads those records (`_host_notices`), remembers the place for each workload and
drains the instance, so a provider's later notice of the same instance is not acted on twice.
A quiet pass reads no audit record: the notice's cordon, in the same transaction, moves the node
feed the loop reads anyway, whichever API replica took it, and that is what tells a pass to
read (`_audit_due`, wired by `watch_feed`); so do this process's own records and a new lease.

A replacement in progress (`corral.autoscale.replace`: a cheaper node rented, the old one not
yet drained or not yet returned) survives a restart and a leader change: each change of it is
written to the audit log (`autoscale.replacement`, with the old and new instance; or
`autoscale.replacement_ended`), and a new autoscaler resumes from the latest of these before its
first decision. So the replacement on its way is kept aside (not cancelled as unneeded), the old
node is drained once it joined, and a drain done before the restart is applied again (idempotent:
work already stopping is left alone) so the old node is returned once idle: once nothing holds
it, work whose stop was asked included (it is out of the core's view, not off its node). A crash between the
launch and its record loses only that record: the instance then serves nothing and is returned
as unneeded on its way (`cancel_unneeded_after_s`) or idle; nothing leaks. The consolidation
guard survives the same way: emptying a node writes `autoscale.emptied` (the node, and until
when nothing is rented for each workload moved off it), read back before the first decision,
so a new leader neither rents at once for the moved work nor empties a second node while the
first drains. A node drained before the restart (and still cordoned) is draining again, from
its `autoscale.drain` record, so it is returned once idle. A node's minimum age before it is
emptied or replaced counts from its provider's launch time (EC2's LaunchTime), which a restart
does not reset.

No capacity leaks: every instance with this cluster's tag is listed at each pass; one that has
not joined after `join_timeout_s` is terminated by the policy, whether this process launched it
or a predecessor did (a restart loses the backoff memory only), and a drained idle one is
terminated. Network calls happen outside any database transaction.

Split by what each part decides: the records a restart resumes from (autoscale_resume.py), how
busy each node is for the idle/return rule (node_return.py), and what a drain stops and how
(drain_stops.py, which also serves `POST /agent/v1/notice`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from corral.autoscale import sentences as S
from corral.autoscale.pool import (
    AutoscalerConfig,
    Budget,
    Decisions,
    PoolView,
    ProviderLimits,
    Waiting,
    decide,
)
from corral.autoscale.state import AutoscalerState
from corral.control import autoscale_resume as R
from corral.control.drain_stops import (
    HOST_NOTICE,
    PROVIDER_REMOVED,
    SPOT_INTERRUPTED,
    act_on_host_notice,
    stop_work,
)
from corral.control.join_hold import JoinHolds
from corral.control.node_return import Stopping, node_use
from corral.control.spot_inputs import SpotInputs
from corral.control.waiting_notes import WaitingNotes
from corral.core.model import CapacityKind, ClusterState
from corral.core.plan import Plan
from corral.providers.base import (
    CapacityState,
    Instance,
    Interruptible,
    Notice,
    Offer,
    Provider,
    required_tags,
)
from corral.providers.bootstrap import EC2_METADATA_URL, agent_user_data
from corral.providers.errors import ProviderError
from corral.store import Store, audit
from corral.store import pool as P

__all__ = ["HOST_NOTICE", "PROVIDER_REMOVED", "SPOT_INTERRUPTED", "PoolAutoscaler", "Reload",
           "act_on_host_notice", "watch_feed"]

log = logging.getLogger(__name__)
_ON_ITS_WAY = (CapacityState.REQUESTED, CapacityState.PROVISIONING, CapacityState.JOINING)
#: providers, their limits, and the names of those being removed
Reload = Callable[[], tuple[Mapping[str, Provider], Mapping[str, ProviderLimits], frozenset[str]]]


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
    #: providers from the store at every pass (runtime add/rm); None: `providers` is fixed
    reload: Reload | None = None
    retiring: frozenset[str] = frozenset()
    #: called once a retiring provider has no live instance left
    retired: Callable[[str], None] | None = None
    interrupted: set[str] = field(default_factory=set)  # instance ids whose notice was acted on
    #: providers whose instances could not be listed at the last pass: never taken for empty
    unlisted: set[str] = field(default_factory=set)
    host_notices_seen: int = 0  # the last `agent.spot_notice` audit id read
    #: retiring providers' deadlines (`corral providers rm --timeout/--force`, server clock);
    #: read from `reload` when it has them (`StoreProviders.deadlines`)
    retire_by: dict[str, float] = field(default_factory=dict)
    #: called with the offers of every pass (the server keeps the spot prices seen)
    offers_seen: Callable[[Sequence[Offer]], None] | None = None
    #: whether the replacement in progress was read back from the store (first pass)
    resumed: bool = False
    #: what the loop has read of the change feed, as a value that moves when it moved: its
    #: lease epoch and the node feed's number (`watch_feed`). A pass reads the audit log
    #: only when it moved or this process wrote a record the pass reads back (`_audit_due`);
    #: None: every pass reads it (an autoscaler driven by hand)
    feed: Callable[[], Hashable] | None = None
    #: the feed's value at the last read, and whether this process wrote a record since
    feed_seen: Hashable = None
    wrote: bool = True  # True: the first pass reads what a predecessor left
    #: host notices a pass reads at most; a full page keeps the next pass due (`wrote`)
    host_notice_page: int = 1000
    #: nodes rented for waiting work, held for it once joined (join_hold.py)
    join_holds: JoinHolds = field(default_factory=JoinHolds)
    #: how interrupted work checkpoints, and the verdicts to tell (spot_inputs.py)
    spot: SpotInputs = field(default_factory=SpotInputs)
    notes: WaitingNotes = field(default_factory=WaitingNotes)  # told on the workload

    def step(self, now: float, plan: Plan | None, cluster: Callable[[], ClusterState],
             stopping: Callable[[], Stopping]) -> Decisions | None:
        """Decide and act when `every_s` passed since the last pass; else only remember `plan`.
        `cluster` and `stopping` (node_return.py: work whose stop was asked, out of the
        snapshot yet on its nodes) are called only for a pass."""
        if plan is not None:
            self.last_plan = plan
        self.join_holds.step(self.store, now, self.joined, cluster)  # every step: joins
        if self.last_at is not None and now - self.last_at < self.every_s:
            return None
        self.last_at = now
        if self.reload is not None:
            providers, limits, self.retiring = self.reload()
            self.providers, self.limits = dict(providers), dict(limits)
            self.retire_by = dict(getattr(self.reload, "deadlines", {}))
        if not self.providers:
            return None  # nothing rents: no snapshot read
        state = cluster()
        offers, instances = self._survey(now, {n.id for n in state.nodes})
        self.join_holds.forget([i for i in instances if i.state in _ON_ITS_WAY])
        if not self.resumed:
            again, instances = R.resume_draining(self.store, state, instances)
            self.draining |= again
        if self.offers_seen is not None:
            self.offers_seen(offers)
        due = self._audit_due()
        self._interruptions(now, state, instances, due)
        self._past_deadline(now, state, instances)
        if not self.resumed:
            self.state = R.resume_emptying(self.store, replace(
                self.state, replacement=R.resume_replacement(self.store, self.state.replacement)))
            self.resumed = True
        self._hold_replacement(now, instances)
        self.spot.learn(self.store, instances, self.unlisted, now, read=due)
        self.state = self.spot.resume(self.store, self.state, state)  # once: a restart
        use = node_use(state, now, self.idle_since, stopping())
        view = PoolView(self._waiting(state), offers, instances, use,
                        self.limits, self.budget, self.retiring, self._nominated(state),
                        checkpoints=self.spot.known,
                        rented_for={iid: frozenset(wids) for iid, (_, wids)
                                    in self.join_holds.rented_for.items()})
        before, emptying = self.state.replacement, self.state.emptying
        config = self.spot.weighing(self.config, offers, self.every_s, now)  # spot_rates.py
        decisions = decide(view, self.state, config, now)
        self.state = decisions.state
        self._apply(now, decisions, state)
        self.spot.tell(self.store, now, self.state, view, config, state)
        self.notes.tell(self.store, now, view.waiting, decisions.waiting)
        if self.state.replacement != before:
            R.persist_replacement(self.store, now, self.state.replacement)
        if self.state.emptying is not None and self.state.emptying != emptying:
            R.persist_emptying(self.store, now, self.state)
        self._finish_retiring(instances, decisions)
        return decisions

    # -- reading ----------------------------------------------------------------------------
    def _survey(self, now: float, in_pool: set[str]) -> tuple[list[Offer], list[Instance]]:
        """Offers and instances; an instance counts as joined once its node is in the pool
        (`in_pool`): until then it is capacity on its way (bench/autoscale.py found the
        autoscaler renting twice for work whose agents had just registered)."""
        offers: list[Offer] = []
        instances: list[Instance] = []
        for name, provider in sorted(self.providers.items()):
            try:
                offers += provider.offers()
                listed = provider.instances()
            except ProviderError as e:
                log.warning("provider %s: %s", name, e)
                R.record(self.store, now, "provider_error", name, {"reason": str(e)})
                self.unlisted.add(name)
                continue
            self.unlisted.discard(name)
            instances += listed
            self.owner.update((i.id, name) for i in listed)
        ids = [i.id for i in instances if i.state != CapacityState.TERMINATED]
        nodes = self.joined(ids) if self.joined is not None and ids else {}
        out = []
        for i in instances:
            node = nodes.get(i.id) or i.node_id
            ended = i.state in (CapacityState.TERMINATING, CapacityState.TERMINATED,
                                CapacityState.FAILED)
            if node is not None and not ended and node in in_pool:
                ready = CapacityState.DRAINING if node in self.draining else CapacityState.READY
                i = replace(i, state=ready, node_id=node)
            elif node is not None and not ended:  # registered, or started, not in the pool yet
                i = replace(i, state=CapacityState.JOINING, node_id=None,
                            launched_at=i.launched_at or now)
            out.append(i)
        return offers, out

    def _waiting(self, state: ClusterState) -> list[Waiting]:
        plan = self.last_plan
        if plan is None:
            return []
        return [Waiting(w, plan.pending[w.id].code) for w in state.workloads
                if not w.running and w.id in plan.pending]

    def _nominated(self, state: ClusterState) -> frozenset[str]:
        """Workloads with room held for them: the snapshot's nominations not expired, and the
        last plan's (made since); their room is theirs once they wait, so nothing is rented for
        them. Work that waits *behind* a nomination (`RoomNominated`) is rented for."""
        held = {n.workload_id for n in state.nominations}
        if self.last_plan is not None:
            held |= {n.workload_id for n in self.last_plan.nominations}
        return frozenset(held)

    def _hold_replacement(self, now: float, instances: Sequence[Instance]) -> None:
        """The replacement node is busy by intent while the replacement lasts: its work comes
        once the old node's has stopped, so its idle time starts when the replacement ends
        (a short idle timeout returned it first: test_replace_restart_up.py)."""
        r = self.state.replacement
        node = next((i.node_id for i in instances if r is not None and i.id == r.new), None)
        if node is not None:
            self.idle_since[node] = now

    def _audit_due(self) -> bool:
        """Whether the audit log may hold a record a pass reads (a host's spot notice, a
        launch, a return, an interruption) that it has not read. Those records are written by
        this autoscaler (`wrote`), by a predecessor (a new lease: the epoch moved), or by the
        API of any replica taking a host's notice, which cordons its node in the same
        transaction (`act_on_host_notice`) and so moves the node feed the loop reads at
        every step. A quiet pass reads nothing; a notice is read at the first pass after the
        loop saw its cordon."""
        seen = None if self.feed is None else self.feed()
        due = self.feed is None or self.wrote or seen != self.feed_seen
        self.feed_seen, self.wrote = seen, False
        return due

    # -- spot interruptions ------------------------------------------------------------------
    def _interruptions(self, now: float, state: ClusterState, instances: list[Instance],
                       read: bool = True) -> None:
        """Act once on each new notice of a joined instance: drain, stop, remember the place;
        the hosts' notices read from the audit log when `read` (`_audit_due`)."""
        by_id = {i.id: i for i in instances}
        if read:
            self._host_notices(now, instances)
        for name, provider in sorted(self.providers.items()):
            if not isinstance(provider, Interruptible):
                continue
            try:
                notices = provider.notices()
            except ProviderError as e:
                R.record(self.store, now, "provider_error", name, {"reason": str(e)})
                continue
            for n in notices:
                i = by_id.get(n.instance_id)
                if n.instance_id in self.interrupted or i is None or i.node_id is None:
                    continue
                self.interrupted.add(n.instance_id)
                self._act_on_notice(now, state, i, n)

    def _host_notices(self, now: float, instances: list[Instance]) -> None:
        """Notices agents read on their hosts since the last pass (already acted on in the
        request): remember the place for each stopped workload, drain the instance."""
        with self.store.read() as conn:
            seen = audit.list_audit(conn, after_id=self.host_notices_seen, action=HOST_NOTICE,
                                    limit=self.host_notice_page)
        if len(seen) >= self.host_notice_page:
            # more may wait past this page, and nothing else may move the feed to read them
            self.wrote = True
        by_node = {i.node_id: i for i in instances if i.node_id is not None}
        for rec in seen:
            self.host_notices_seen = rec.id
            i = by_node.get(rec.target)
            if i is None or i.id in self.interrupted:
                continue
            self.interrupted.add(i.id)
            for wid in rec.detail.get("stopped", []):
                self.state = self.state.interrupted(str(wid), i.provider, i.offer.zone)
            self.spot.interrupted(str(wid) for wid in rec.detail.get("stopped", []))
            self.draining.add(rec.target)

    def _act_on_notice(self, now: float, state: ClusterState, i: Instance, n: Notice) -> None:
        node = i.node_id or ""
        on_node = [w for w in state.workloads if any(a.node_id == node for a in w.assignments)]
        for w in on_node:
            self.state = self.state.interrupted(w.id, i.provider, i.offer.zone)
        self.spot.interrupted(w.id for w in on_node)
        left = max(n.deadline - now, 0.0)
        message = (f"spot interruption of {i.id} ({i.provider}, {i.offer.zone}): node {node} "
                   f"is taken back in {left:.0f} s; stopping the gang to restart it from its "
                   "checkpoint elsewhere")
        with self.store.write() as conn:
            P.set_cordoned(conn, node, True)
            stopped = stop_work(conn, now, [w.id for w in on_node], SPOT_INTERRUPTED, message,
                                 node)
            audit.record(conn, at=now, actor=R.ACTOR, action="autoscale.interrupted", target=node,
                         detail={"instance": i.id, "deadline": n.deadline, "reason": n.reason,
                                 "stopped": stopped})
        self.wrote = True  # spot_rates reads it back
        self.draining.add(node)
        log.warning("spot interruption: %s drained, %d stopped (%s)", node, len(stopped), n.reason)

    # -- removal deadlines --------------------------------------------------------------------
    def _past_deadline(self, now: float, state: ClusterState, instances: list[Instance]) -> None:
        """A retiring provider past its deadline: all work still on its nodes (non-preemptible
        too: that is what the timeout is for) is stopped with the preemption contract and
        requeued, no restart spent (`ProviderRemoved`); each instance is returned once idle."""
        due = {name for name in self.retiring if name in self.retire_by
               and now >= self.retire_by[name]}
        if not due:
            return
        nodes = {i.node_id: i for i in instances if i.provider in due and i.node_id is not None}
        for node, i in sorted(nodes.items()):
            on_node = [w.id for w in state.workloads
                       if any(a.node_id == node for a in w.assignments)]
            if not on_node:
                continue
            message = (f"provider {i.provider} is being removed and its timeout passed: the "
                       f"work on {node} is stopped so that {i.id} can be returned; requeued "
                       "elsewhere from its checkpoint")
            with self.store.write() as conn:
                P.set_cordoned(conn, node, True)
                stopped = stop_work(conn, now, on_node, PROVIDER_REMOVED, message, node)
                if stopped:
                    audit.record(conn, at=now, actor=R.ACTOR, action="autoscale.removal_timeout",
                                 target=node, detail={"provider": i.provider, "instance": i.id,
                                                      "stopped": stopped})
            self.draining.add(node)

    # -- acting -----------------------------------------------------------------------------
    def _apply(self, now: float, d: Decisions, state: ClusterState | None = None) -> None:
        for t in d.terminations:
            provider = self.providers.get(self.owner.get(t.instance_id, ""))
            R.record(self.store, now, "terminate", t.instance_id, {"reason": t.reason})
            self.wrote = True  # spot_rates reads it back
            if provider is not None:
                try:
                    provider.terminate([t.instance_id])
                except ProviderError as e:
                    R.record(self.store, now, "terminate_failed", t.instance_id, {"reason": str(e)})
        for dr in d.drains:
            # a retiring or replaced node: its preemptible work leaves with the preemption
            # contract; other work runs to its end before the node goes
            leaving = self.owner.get(dr.instance_id) in self.retiring and state is not None
            why = dr.stop_reason or (PROVIDER_REMOVED if leaving else None)
            victims = [w.id for w in state.workloads if w.preemptible and any(
                a.node_id == dr.node_id for a in w.assignments)] if why and state else []
            with self.store.write() as conn:
                P.set_cordoned(conn, dr.node_id, True)
                stopped = stop_work(conn, now, victims, why or PROVIDER_REMOVED,
                                     f"{dr.reason}; requeued to run elsewhere from its "
                                     "checkpoint", dr.node_id)
                audit.record(conn, at=now, actor=R.ACTOR, action="autoscale.drain",
                             target=dr.node_id, detail={"reason": dr.reason,
                                                        "instance": dr.instance_id,
                                                        "stopped": stopped})
            self.draining.add(dr.node_id)
        for x in d.launches:
            launched = self._launch(now, x.offer, x.count, x.reason, x.workloads)
            if x.replaces is not None and launched:
                self.state = self.state.replacement_launched(launched[0].id)

    def _finish_retiring(self, instances: Sequence[Instance], d: Decisions) -> None:
        """A retiring provider whose every instance is returned is removed for good."""
        if not self.retiring or self.retired is None:
            return
        ended = {t.instance_id for t in d.terminations}
        for name in sorted(self.retiring - self.unlisted):
            live = [i for i in instances if i.provider == name and i.id not in ended
                    and i.state not in (CapacityState.TERMINATED, CapacityState.FAILED,
                                        CapacityState.TERMINATING)]
            if not live:
                self.retired(name)

    def _launch(self, now: float, offer: Offer, count: int, reason: str,
                workloads: Sequence[str]) -> list[Instance]:
        provider = self.providers[offer.provider]
        request = f"req-{secrets.token_hex(6)}"
        facts = {"provider": offer.provider, "capacity_kind": str(offer.capacity_kind),
                 "price_per_gpu_hour": f"{offer.price_per_gpu_hour:.6f}",
                 "instance_type": offer.instance_type, "region": offer.region,
                 "zone": offer.zone}
        if offer.capacity_kind == CapacityKind.SPOT and getattr(provider, "kind", "") == "aws":
            facts["spot_notice_url"] = EC2_METADATA_URL  # the agent reads its notice there
        # a provider that starts the agent itself (ssh) gets no cloud-init script
        user_data = ("" if getattr(provider, "starts_agent", False) else
                     agent_user_data(self.server_url, self.join_token(count), facts, offer.labels))
        try:
            launched = provider.launch(
                offer, count, user_data=user_data,
                tags=required_tags(self.cluster_id, request, offer.provider))
        except ProviderError as e:
            self.state = self.state.launch_failed(
                offer, e.reason_code, now, base_s=self.config.backoff_base_s,
                max_s=self.config.backoff_max_s, retry_after_s=e.retry_after_s)
            R.record(self.store, now, "launch_failed", offer.instance_type,
                         {"reason": str(e), "offer": S.offer_detail(offer),
                          "workloads": list(workloads)})
            return []
        self.state = self.state.launch_succeeded(offer)
        self.wrote = True  # spot_rates reads the launch record back
        self.join_holds.launched(launched, offer, workloads)
        R.record(self.store, now, "launch", ",".join(i.id for i in launched),
                     {"reason": reason, "offer": S.offer_detail(offer), "workloads": list(workloads),
                      "instances": [i.id for i in launched]})  # the target is cut at 200
        return launched


class _Leading(Protocol):
    epoch: int | None


class _Feed(Protocol):
    @property
    def nodes_version(self) -> int: ...


def watch_feed(scaler: PoolAutoscaler, leadership: _Leading, live: _Feed) -> None:
    """Let `scaler` know what the control loop has read (its lease's epoch, the node feed's
    number in its LiveState), so a quiet pass reads no audit record (`_audit_due`)."""
    scaler.feed = lambda: (leadership.epoch, live.nodes_version)
