"""The bound on a gang's wait behind kept reservations (issue 10), over generated histories.

Queue a fills a pool of 8-GPU nodes with 1-GPU jobs (preemptible or not) that each run at
most `drain` seconds, and sends 2 x 8-GPU gangs every few cycles that run at most as long;
queue b holds one node of its own for good, and its 2 x 8-GPU gang g arrives at a drawn
cycle and waits. Drawn too: whether b's quota covers g (g within its guarantee: then, with
a's jobs preemptible, reclaim starts g within a cycle of its arrival; with them not preemptible,
g waits for their ends like an unowed gang). Queue a stays first in the fair-share order, so without aging a's gangs pass
the one reservation (`max_reservations` 1) among themselves and g never gets it
(`test_reservation_aging`). The cycles are applied as the control plane applies plans
(placements start, evictions stop, the plan's holders passed back as
`ClusterState.reserved_for`); every cycle passes the reason oracle, and a rerun on its applied
result evicts nothing and keeps the plan's holders.

**The bound** (`bound`): g starts at most

    window + cooldown + (n + 2) x drain + 3 cycles

after it arrives, n being the big workloads submitted before it (here a's gangs before g's
arrival; those are ahead of g in the age order). Why, step by step:
- windows count from submission: g is in a reservation window again at most window +
  cooldown after its arrival;
- while g is in its window the slot goes to g or to work older than g: a holder submitted
  more than a window after g hands it to its oldest heir (`reservation_heirs.heirs`), a slot
  taken in allocation goes to the failing workload's heir, a free slot after allocation goes to the
  oldest big waiting workload in its window (`allocate.fill_free_slots`);
- a holder holds only while its nodes drain: each of their jobs ends within `drain`, nothing
  else is placed on reserved nodes, and a holder that fits starts before allocation
  (`keep_reservations`). So each of the n older workloads, and the one holder younger than g
  by less than a window that may hold the slot when g's window opens (`max_reservations`
  1), keeps g waiting at most `drain`; then g's own nodes drain within `drain`;
- a cycle each to see the window open, a holder start, and g start.
It is checked over the generated histories below, not proven for every pool: a holder whose
window ends mid-drain gives the slot up, and takes it again only in its next window.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.test_churn import apply_like_control_plane, check_reason_oracle

from builders import job, node, queue
from corral.core import ClusterState, SchedulerConfig, Workload, schedule
from corral.core.model import WorkloadState

CFG = SchedulerConfig(reserve_after_s=0.0, max_reservation_s=1800.0,
                      reservation_cooldown_s=600.0, consolidate=False)
DT = 300.0


def bound(drain: float, older: int) -> float:
    """How long after its arrival g starts at the latest, with `older` big workloads
    submitted before it (see the module docstring)."""
    return CFG.max_reservation_s + CFG.reservation_cooldown_s + (older + 2) * drain + 3 * DT


def _start(nodes: int, drain: float, preemptible: bool, owed: bool, rng: random.Random
           ) -> tuple[ClusterState, dict[str, float]]:
    pool = [node(f"n{i}") for i in range(nodes + 1)]
    work: list[Workload] = []
    ends: dict[str, float] = {}
    for d in range(8):  # b's own node, for the whole run
        work.append(job(f"b{d}").queue("b").gpus(1).running((f"n{nodes}", (d,))).build())
        ends[f"b{d}"] = float("inf")
    for n in range(nodes):
        for d in range(8):
            wid = f"a-n{n}-{d}"
            w = job(wid).queue("a").gpus(1).running((f"n{n}", (d,)))
            work.append((w if preemptible else w.not_preemptible()).build())
            ends[wid] = rng.uniform(60.0, drain)
    # owed: b's quota covers its node and g (g is within its guarantee), a's is the rest
    quota_b = 24.0 if owed else 0.0
    quota_a = max(nodes * 8 + 8 - quota_b, 0.0) if owed else 0.0
    s = ClusterState(tuple(n.build() for n in pool),
                     (queue("a", quota_a, weight=9.0), queue("b", quota_b, weight=1.0)),
                     tuple(work))
    return s, ends


def run(nodes: int, drain: float, period: int, arrive: int, preemptible: bool, owed: bool,
        seed: int, cycles: int) -> tuple[float | None, float]:
    """Cycles of one history; returns when g started (None if not within `cycles`) and when
    it arrived."""
    rng = random.Random(seed)
    state, ends = _start(nodes, drain, preemptible, owed, rng)
    g_at = arrive * DT
    for k in range(cycles):
        now = k * DT
        done = {w.id for w in state.workloads
                if w.state is WorkloadState.RUNNING and (w.started_at or 0.0) + ends[w.id] <= now}
        new = [job(f"a{k}-{i}").queue("a").gpus(1).submitted(now) for i in range(rng.randint(2, 5))]
        fresh = [(b if preemptible else b.not_preemptible()).build() for b in new]
        ends.update((w.id, rng.uniform(60.0, drain)) for w in fresh)
        if k % period == 0:
            fresh.append(job(f"ag{k}").queue("a").gpus(8).gang(2).submitted(now).build())
            ends[f"ag{k}"] = rng.uniform(60.0, drain)
        if k == arrive:
            fresh.append(job("g").queue("b").gpus(8).gang(2).submitted(now).build())
            ends["g"] = drain
        state = replace(state, workloads=tuple(
            w for w in state.workloads if w.id not in done) + tuple(fresh))
        plan = schedule(state, now, CFG)
        check_reason_oracle(state, plan, now)
        state = apply_like_control_plane(state, plan, now)
        state = replace(state, reserved_for=tuple(r.workload_id for r in plan.reservations))
        rerun = schedule(state, now, CFG)
        assert rerun.evictions == (), f"a rerun at {now} evicts"
        kept = {r.workload_id for r in rerun.reservations}
        assert {r.workload_id for r in plan.reservations} <= kept, f"a rerun at {now} moves a slot"
        if any(p.workload_id == "g" for p in plan.placements):
            return now, g_at
    return None, g_at


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.integers(2, 4), drain=st.sampled_from([600.0, 900.0, 1200.0, 1500.0]),
       period=st.integers(2, 6), arrive=st.integers(0, 4), preemptible=st.booleans(),
       owed=st.booleans(), seed=st.integers(0, 2**16))
def test_a_waiting_gang_starts_within_the_bound(nodes: int, drain: float, period: int,
                                                arrive: int, preemptible: bool, owed: bool,
                                                seed: int) -> None:
    older = sum(1 for k in range(arrive) if k % period == 0)  # a's gangs before g
    limit = bound(drain, older)
    started, arrived = run(nodes, drain, period, arrive, preemptible, owed, seed,
                           arrive + int(limit // DT) + 2)
    if owed and preemptible:  # a borrows what b is owed, and reclaim may evict it
        assert started is not None and started - arrived <= DT, (
            f"g arrived at {arrived}, started at {started}: reclaim took more than a cycle")
    assert started is not None and started - arrived <= limit, (
        f"g arrived at {arrived}, started at {started}; the bound is {limit}")
