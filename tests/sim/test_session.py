"""The simulator drives the same core: a CoreSession cycle and `corral.core.schedule` decide the
same placements and evictions on the same state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from builders import job, node, queue
from corral.core import ClusterState, Queue, SchedulerConfig, Workload, schedule
from corral.sim.session import CoreSession

CONFIGS = {
    "default": SchedulerConfig(),
    "corral-fill": SchedulerConfig(scoring={"balanced-fgd": 1.0, "bestfit": 0.01}),
    "fifo": SchedulerConfig(backfill=False, consolidate=False, reclaim=False, preempt=False),
}


def _demand(work: Sequence[Workload]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in work:
        out[w.queue] = out.get(w.queue, 0) + w.total_milli()
    return out


def _compare(nodes: list, queues: list[Queue], first: list[Workload], then: list[Workload],
             config: SchedulerConfig) -> int:
    """Start `first` through a session at t=0, then decide `then` at t=100 both ways."""
    built = [n.build() for n in nodes]
    session = CoreSession(built, queues, config, seed=3)
    session.cycle(0.0, first, _demand(first))
    running = list(session.live.values())
    waiting = [w for w in first if w.id not in session.live] + then
    state = ClusterState(tuple(built), tuple(queues), tuple(running + waiting))
    plan = schedule(state, 100.0, config, seed=3)
    got = session.cycle(100.0, waiting, _demand(running + waiting))
    assert got.placed == {p.workload_id: p.assignments for p in plan.placements}
    assert sorted(got.evicted) == sorted((e.workload_id, e.rule) for e in plan.evictions)
    return len(got.evicted)


def test_reclaim_and_preemption_agree() -> None:
    nodes = [node("a").gpus(8), node("b").gpus(8)]
    queues = [queue("ml", quota=12), queue("ops", quota=4)]
    first = [job(f"bulk-{i}").queue("ml").gpus(4).priority(0).build() for i in range(4)]
    then = [job("ops-1").queue("ops").gpus(4).build(),
            job("urgent").queue("ml").gpus(4).priority(5).build()]
    evicted = {name: _compare(nodes, queues, first, then, c) for name, c in CONFIGS.items()}
    assert evicted["default"] >= 2 and evicted["fifo"] == 0  # a reclaim and a preemption


def test_fifo_blocks_behind_the_head_in_both() -> None:
    nodes = [node("a").gpus(8)]
    queues = [queue("shared")]
    first = [job("big-0").queue("shared").gpus(6).build()]
    then = [job("big-1").queue("shared").gpus(4).submitted(1).build(),
            job("small").queue("shared").gpus(1).submitted(2).build()]
    _compare(nodes, queues, first, then, CONFIGS["fifo"])


jobs = st.lists(
    st.tuples(st.sampled_from(["q1", "q2"]), st.sampled_from([0, 1, 2, 4, 8]),
              st.sampled_from([0, 250, 500]), st.integers(0, 2), st.integers(1, 2)),
    min_size=1, max_size=8)


def _workloads(prefix: str, spec: list[tuple[str, int, int, int, int]], t: float) -> list[Workload]:
    out = []
    for i, (q, gpus, share, priority, workers) in enumerate(spec):
        b = job(f"{prefix}{i}").queue(q).priority(priority).submitted(t + i).cpu(4000)
        b = b.share(share) if share and gpus == 1 else b.gpus(gpus)
        out.append(replace(b.build(), workers=workers if gpus >= 4 else 1))
    return out


@given(first=jobs, then=jobs, config=st.sampled_from(sorted(CONFIGS)))
def test_session_matches_schedule(first: list[tuple[str, int, int, int, int]],
                                  then: list[tuple[str, int, int, int, int]], config: str) -> None:
    nodes = [node("a").gpus(8).at(rack="r1"), node("b").gpus(8).at(rack="r1"),
             node("c").gpus(4).model("L40S").at(rack="r2")]
    queues = [queue("q1", quota=10), queue("q2", quota=6)]
    _compare(nodes, queues, _workloads("f", first, 0.0), _workloads("t", then, 50.0), CONFIGS[config])


def test_moved_then_evicted_again_is_not_placed() -> None:
    """A running workload that a cycle moves and then evicts again ends evicted (the replay
    found this: the plan listed it as placed too)."""
    from corral.core.queues import QueueBook, Totals
    from corral.core.snapshot import Capacity, NodeTable
    from corral.core.statement import Statement

    built = [node("a").gpus(8).build(), node("b").gpus(8).build()]
    cap = Capacity(NodeTable.build(built))
    stmt = Statement(cap, QueueBook((queue("q"),), Totals(16_000, 256_000, 2_000_000), {}))
    w = job("w").queue("q").gpus(2).running(("a", (0, 1))).build()
    assert stmt.adopt(w)
    stmt.remove(w, "Consolidate", "x")
    stmt.place(w, job("w").gpus(2).running(("b", (0, 1))).build().assignments)
    stmt.remove(w, "Preempt", "y")
    placed, evicted = stmt.outcome()
    assert "w" not in placed
    assert [op.workload.id for op in evicted] == ["w"]


def test_a_failure_remembered_from_the_last_cycle_does_not_skip_a_reservation() -> None:
    """Issue 10 (bench/contention.py seed 4): a big job fails before its reservation window
    opens; the next cycle, with nothing freed in between, the window is open. `schedule` tries
    it, fails, and reserves a node; the session used to skip the try (its failure memo said
    "fails again") and so reserved nothing, and placed a small job on the node `schedule` kept
    for the big one."""
    config = SchedulerConfig(scoring={"bestfit": 1.0})
    built = [node("a").gpus(8).build(), node("b").gpus(8).build()]
    queues = [queue("ml")]
    fills = [job("fill-a").queue("ml").gpus(5).submitted(-20).build(),
             job("fill-b").queue("ml").gpus(4).submitted(-10).build()]
    big = job("big").queue("ml").gpus(8).submitted(0).build()
    session = CoreSession(built, queues, config, seed=3)
    first = session.cycle(0.0, [*fills, big], _demand([*fills, big]))
    assert sorted(first.placed) == ["fill-a", "fill-b"]  # big fails before its window (300 s)
    small = job("small").queue("ml").gpus(1).submitted(350).build()
    now = config.reserve_after_s + 100  # nothing freed since: only the window changed
    running = list(session.live.values())
    state = ClusterState(tuple(built), tuple(queues), (*running, big, small))
    plan = schedule(state, now, config, seed=3)
    assert [r.workload_id for r in plan.reservations] == ["big"]
    got = session.cycle(now, [big, small], _demand([*running, big, small]))
    assert got.placed == {p.workload_id: p.assignments for p in plan.placements}
    assert list(session.cap.reservations) == ["big"]
