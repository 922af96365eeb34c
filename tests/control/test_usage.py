"""Time-decayed fair share in the control plane: the snapshot sums each queue's decayed
GPU-seconds from the ledger's metering rows, and the core orders a queue that used the pool
lately after an equal one. On a fake backend and a manual clock, on both databases."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

import pytest

from corral.control.accounting import Accounting
from corral.control.snapshot import SpecCache, load_snapshot, queue_usage
from corral.core import Queue, SchedulerConfig, schedule
from corral.core.fairshare import decayed_gpu_seconds
from corral.core.model import QueueUsage
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import pool as P

from .rig import Rig

HOUR = 3600.0
#: fair share with one hour's half-life, and nothing but ordering at play
USAGE = SchedulerConfig(consolidate=False, reclaim=False, preempt=False, usage_weight=1.0,
                        usage_half_life_s=HOUR)
NO_USAGE = replace(USAGE, usage_weight=0.0)


@pytest.fixture
def rig(store: Store) -> Rig:
    """The rig's 8 GPUs (2 nodes x 4), metered by the ledger (as `corral up` runs it), and two
    queues with equal quotas."""
    rig = Rig(store, admission=Accounting(store))
    with store.write() as c:
        P.upsert_queue(c, Queue("a", quota_gpus=4))
        P.upsert_queue(c, Queue("b", quota_gpus=4))
    return rig


def _run_for(rig: Rig, queue: str, seconds: float) -> str:
    """Run an 8-GPU gang in `queue` for `seconds`, to its end (its usage rows closed)."""
    wid = rig.submit(queue=queue, workers=2, gpus=4)
    rig.step(2)
    assert rig.state(wid) == "running"
    rig.clock.advance(seconds)
    rig.backend.finish(wid)
    rig.step(2)
    assert rig.state(wid) == "succeeded"
    return wid


def _span(store: Store, wid: str) -> tuple[float, float | None, float]:
    """(start, end, GPUs) of the attempt, as the ledger metered it."""
    with store.read() as c:
        rows = LR.usage_records(c, Decimal(10**10), workload_id=wid)
    starts = {float(u.start) for u in rows}
    ends = {None if u.open else float(u.end) for u in rows}
    assert len(starts) == 1 and len(ends) == 1  # a gang: one span
    return starts.pop(), ends.pop(), sum(u.milli for u in rows) / 1000


def _plan_both(rig: Rig, config: SchedulerConfig) -> set[str]:
    """An 8-GPU gang waits in each queue; only one fits. Which does the plan place?"""
    now = rig.clock.now()
    with rig.store.read() as c:
        snap = load_snapshot(c, now, SpecCache(), config=config)
    return {p.workload_id for p in schedule(snap.state, now, config).placements}


def test_the_queue_that_used_the_pool_lately_goes_after_an_equal_one(rig: Rig) -> None:
    hog = _run_for(rig, "a", HOUR)
    a_next = rig.submit(queue="a", workers=2, gpus=4)
    b_next = rig.submit(queue="b", workers=2, gpus=4)
    # `a` comes first by name when past use does not count ...
    assert _plan_both(rig, NO_USAGE) == {a_next}
    # ... and after `b` when it does: `a` held all 8 GPUs for the last hour
    assert _plan_both(rig, USAGE) == {b_next}

    now = rig.clock.now()
    with rig.store.read() as c:
        usage = load_snapshot(c, now, SpecCache(), config=USAGE).state.usage
        assert load_snapshot(c, now, SpecCache(), config=NO_USAGE).state.usage == ()
        assert load_snapshot(c, now, SpecCache()).state.usage == ()
    start, end, gpus = _span(rig.store, hog)
    assert gpus == 8 and end is not None and end - start >= HOUR
    assert [u.queue for u in usage] == ["a"]
    assert usage[0].decayed_gpu_seconds == pytest.approx(
        decayed_gpu_seconds(8, start, end, now, HOUR))
    # the last hour, each second weighed from 1/2 (an hour ago) to 1 (now): about 0.72 x 8 GPU-h
    assert usage[0].decayed_gpu_seconds == pytest.approx(8 * HOUR / 2 / math.log(2), rel=1e-3)


def test_the_loop_places_the_queue_that_used_less_first(rig: Rig) -> None:
    _run_for(rig, "a", HOUR)
    rig.loop.settings = replace(rig.loop.settings, scheduler=USAGE)
    a_next = rig.submit(queue="a", workers=2, gpus=4)
    b_next = rig.submit(queue="b", workers=2, gpus=4)
    rig.step()
    assert (rig.state(b_next), rig.state(a_next)) == ("starting", "pending")


def test_running_work_counts_up_to_now_and_old_work_drops_out(rig: Rig) -> None:
    hog = rig.submit(queue="a", workers=2, gpus=4)
    rig.step(2)
    rig.clock.advance(HOUR)
    rig.step()  # still running: its usage rows are open
    start, end, _ = _span(rig.store, hog)
    assert end is None
    now = rig.clock.now()
    with rig.store.read() as c:
        (used,) = queue_usage(c, now, HOUR)
    assert used.queue == "a"
    assert used.decayed_gpu_seconds == pytest.approx(
        decayed_gpu_seconds(8, start, None, now, HOUR))

    rig.backend.finish(hog)
    rig.step(2)
    _, end, _ = _span(rig.store, hog)
    assert end is not None
    with rig.store.read() as c:
        assert queue_usage(c, end + 9.9 * HOUR, HOUR) != ()  # inside the 10 half-lives
        assert queue_usage(c, end + 10.1 * HOUR, HOUR) == ()  # past them: not read at all


def test_unmetered_loop_has_no_history(store: Store) -> None:
    """Without the ledger's accounting no attempt is metered: past use reads as none."""
    rig = Rig(store)
    wid = rig.submit(gpus=4)
    rig.step(2)
    rig.clock.advance(HOUR)
    rig.backend.finish(wid)
    rig.step(2)
    with store.read() as c:
        assert queue_usage(c, rig.clock.now(), HOUR) == ()


def test_the_loop_reads_past_use_from_the_store_at_most_once_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from corral.control import snapshot as S

    reads: list[tuple[float, float]] = []

    def counted(conn: object, now: float, half_life_s: float) -> tuple[QueueUsage, ...]:
        reads.append((now, half_life_s))
        return (QueueUsage("a", now),)

    monkeypatch.setattr(S, "queue_usage", counted)
    cache = S.UsageCache(refresh_s=60.0)
    got = [cache.get(None, t, 3600.0) for t in (0.0, 30.0, 59.9)]  # type: ignore[arg-type]
    assert reads == [(0.0, 3600.0)] and got == [(QueueUsage("a", 0.0),)] * 3
    cache.get(None, 60.0, 3600.0)  # type: ignore[arg-type]  # a minute on: read again
    cache.get(None, 61.0, 7200.0)  # type: ignore[arg-type]  # another half-life: read again
    cache.get(None, 10.0, 7200.0)  # type: ignore[arg-type]  # the clock went back: read again
    assert reads == [(0.0, 3600.0), (60.0, 3600.0), (61.0, 7200.0), (10.0, 7200.0)]
