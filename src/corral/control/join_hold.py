"""A node the autoscaler rented for waiting work is held for that work once it joins.

The rule and its bound are `corral.autoscale.hold` (Karpenter's nominated node). Here, in the
control plane, at every loop step (not only at the autoscaler's passes, so a node that joins
between two passes is held at once):

    instances launched for workloads (remembered at launch, until a pass sees the node in
    the pool: till then the pass counts the instance as on its way, for that work)
      ─> the agents' registrations say which node each became (`joined`, instance -> node)
      ─> `joined_holds`: a nomination per workload it was rented for that still waits,
         held until first seen + `hold_s`
      ─> each nomination not expired is written to the nominations table when absent, the
         core's existing input (`corral.store.nominations`; the snapshot loads it for a
         waiting nominee, `corral.core.nominations` keeps other work off its room and
         places the nominee there first)

Why written again each step: a plan's apply stores exactly the nominations in force, and a
nomination whose node is not in the pool yet (the agent registered, the loop has not added its
node) was not held by that cycle, so it is dropped; writing it again until its `until` keeps it
for the first cycle that sees the node. A row already there (a plan's own nomination of the
same workload) is left alone. What is remembered is in memory: after a restart, a node that
joins is not held (it serves whatever the core places first, as before this rule).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from corral.autoscale.hold import joined_holds
from corral.core.model import ClusterState, Nomination, WorkloadState
from corral.providers.base import Instance, Offer
from corral.store import Store
from corral.store.nominations import add_absent

__all__ = ["JoinHolds"]

#: how long a joined node is held for the work it was rented for: a few of the loop's cycles
#: after the first that can see the node (the nominee is placed at that one when it waits)
DEFAULT_HOLD_S = 120.0


@dataclass
class JoinHolds:
    hold_s: float = DEFAULT_HOLD_S
    #: instance id -> (its offer, the workloads it was rented for), while it is on its way:
    #: until an autoscaler pass sees its node in the loop's pool (`forget`), not only until its
    #: agent registers. Between the two, the instance is still capacity on its way for the
    #: pass (`PoolView.rented_for`), and without its work the pass rented again (issue 11,
    #: tests/providers/test_join_race.py): as the cluster-autoscaler counts a node registered
    #: but not ready as upcoming (clusterstate.GetUpcomingNodes)
    rented_for: dict[str, tuple[Offer, tuple[str, ...]]] = field(default_factory=dict)
    #: instances of `rented_for` seen registered, whose holds were made (once per instance)
    registered: set[str] = field(default_factory=set)
    holds: dict[str, Nomination] = field(default_factory=dict)  # workload id -> its hold

    def launched(self, instances: Sequence[Instance], offer: Offer,
                 workloads: Sequence[str]) -> None:
        for i in instances:
            self.rented_for[i.id] = (offer, tuple(workloads))

    def forget(self, live: Sequence[Instance]) -> None:
        """`live`: the instances still on their way; the others joined the pool (the core
        sees their room), were returned or failed."""
        ids = {i.id for i in live}
        self.rented_for = {k: v for k, v in self.rented_for.items() if k in ids}
        self.registered &= ids

    def step(self, store: Store, now: float,
             joined: Callable[[Sequence[str]], Mapping[str, str]] | None,
             cluster: Callable[[], ClusterState]) -> None:
        self.holds = {k: n for k, n in self.holds.items() if n.until is None or n.until > now}
        unseen = sorted(self.rented_for.keys() - self.registered)
        nodes = joined(unseen) if joined is not None and unseen else {}
        if nodes:
            waiting = {w.id: w for w in cluster().workloads if w.state == WorkloadState.PENDING}
            for iid in sorted(nodes):
                offer, wids = self.rented_for[iid]
                self.registered.add(iid)
                new = joined_holds(nodes[iid], offer, [waiting[x] for x in wids if x in waiting],
                                   self.holds, now + self.hold_s)
                self.holds.update((n.workload_id, n) for n in new)
        if self.holds:
            with store.write() as conn:
                add_absent(conn, self.holds.values(), now)
