"""Which queue goes first when only one more workload fits: dominant resource fairness (DRF) and
time-decayed usage, through `schedule` and through `QueueBook.order_key`."""

from __future__ import annotations

import pytest

from builders import job, node, queue, state
from corral.core import ClusterState, QueueUsage, SchedulerConfig, schedule
from corral.core.model import MILLI_PER_GPU
from corral.core.queues import QueueBook, Totals

NOW = 10_000.0
HOUR = 3600.0
STILL = SchedulerConfig(consolidate=False, reclaim=False, preempt=False)


def _placed(plan_state: ClusterState, config: SchedulerConfig = STILL) -> set[str]:
    return {p.workload_id for p in schedule(plan_state, NOW, config).placements}


# -- DRF ------------------------------------------------------------------------------------------

def _drf_state(cpu_heavy_cores: int) -> ClusterState:
    """One node: 8 GPUs, 16 cores. `cpu` runs 1 GPU with `cpu_heavy_cores` cores; `gpu` runs
    2 GPUs with 1 core. Each queue waits with 1 GPU + 2 cores; 3 cores are left when `cpu` holds
    12, so only one of the two fits."""
    return state(
        [node("n").gpus(8).cpu(16_000)],
        [queue("cpu"), queue("gpu")],
        [job("cpu-run").queue("cpu").cpu(cpu_heavy_cores * 1000).not_preemptible()
         .running(("n", (0,))),
         job("gpu-run").queue("gpu").gpus(2).cpu(1000).not_preemptible()
         .running(("n", (1, 2))),
         job("cpu-wait").queue("cpu").cpu(2000).submitted(1),
         job("gpu-wait").queue("gpu").cpu(2000).submitted(1)],
    )


def test_drf_orders_a_cpu_bound_queue_by_its_cpu_share() -> None:
    """By GPUs alone `cpu` (1 of 8 GPUs) is behind `gpu` (2 of 8) and would go first. Its
    dominant resource is CPU, 12 of 16 cores = 0.75 > 0.25: `gpu` goes first and takes the
    last CPU; `cpu` waits."""
    assert _placed(_drf_state(cpu_heavy_cores=12)) == {"gpu-wait"}


def test_without_a_cpu_bound_queue_gpu_share_decides() -> None:
    """The same pool with `cpu` holding 1 core: both shares are GPU shares, `cpu` has fewer
    (the control case: the order above comes from the CPU share, nothing else)."""
    s = _drf_state(cpu_heavy_cores=1)
    # with 14 cores free both would fit; take a GPU-light node so only one does
    s = ClusterState((node("n").gpus(4).cpu(16_000).build(),), s.queues, s.workloads)
    assert _placed(s) == {"cpu-wait"}


def test_order_key_reads_the_dominant_share() -> None:
    """The ratio in the key is the dominant share over the deserved share (as a fraction)."""
    s = _drf_state(cpu_heavy_cores=12)
    totals = Totals(8 * MILLI_PER_GPU, 16_000, 1_000_000)
    book = QueueBook(s.queues, totals, {"cpu": 2000, "gpu": 3000})
    for w in s.workloads:
        if w.running:
            book.add(w, w.total_milli(), ())
    # deserved: cpu 2 of 8 GPUs (0.25), gpu 3 of 8 (0.375); dominant: cpu 12/16, gpu 2/8
    assert book.order_key("cpu")[2] == pytest.approx(0.75 / 0.25)
    assert book.order_key("gpu")[2] == pytest.approx(0.25 / 0.375)


# -- time-decayed usage ---------------------------------------------------------------------------

def _two_queues(usage: tuple[QueueUsage, ...], quota: float = 4) -> ClusterState:
    """8 GPUs, two queues with equal quota and an 8-GPU job each: only one fits."""
    return ClusterState(
        (node("n").gpus(8).build(),),
        (queue("a", quota=quota), queue("b", quota=quota)),
        (job("a-job").queue("a").gpus(8).submitted(1).build(),
         job("b-job").queue("b").gpus(8).submitted(1).build()),
        usage,
    )


A_USED = (QueueUsage("a", 8 * HOUR),)  # `a` held the whole pool for about an hour


@pytest.mark.parametrize(("usage", "weight", "first"), [
    ((), 1.0, "a-job"),  # no history: names break the tie
    (A_USED, 0.0, "a-job"),  # the knob off: history ignored
    (A_USED, 1.0, "b-job"),  # `a` used the pool lately: `b` goes first
    ((QueueUsage("b", 8 * HOUR),), 1.0, "a-job"),
], ids=["no-history", "weight-zero", "a-used-more", "b-used-more"])
def test_recent_use_orders_a_queue_after_an_equal_one(
    usage: tuple[QueueUsage, ...], weight: float, first: str
) -> None:
    config = SchedulerConfig(consolidate=False, reclaim=False, preempt=False,
                             usage_weight=weight, usage_half_life_s=HOUR)
    assert _placed(_two_queues(usage), config) == {first}


def test_usage_never_overrides_a_quota() -> None:
    """History reorders queues within a tier only: `a` below its quota still goes before `b`
    above it, however much `a` used lately."""
    s = ClusterState(
        (node("n").gpus(8).build(),),
        (queue("a", quota=6), queue("b", quota=0)),
        (job("b-run").queue("b").gpus(2).not_preemptible().running(("n", (0, 1))).build(),
         job("a-job").queue("a").gpus(6).submitted(1).build(),
         job("b-job").queue("b").gpus(6).submitted(1).build()),
        (QueueUsage("a", 1e9),),
    )
    config = SchedulerConfig(consolidate=False, reclaim=False, preempt=False, usage_weight=10.0,
                             usage_half_life_s=HOUR)
    assert _placed(s, config) == {"a-job"}


def test_history_counts_per_subtree() -> None:
    """A parent's history includes its children's, as its current use does."""
    queues = (queue("org"), queue("org.a", parent="org"), queue("other"))
    totals = Totals(8 * MILLI_PER_GPU, 1, 1)
    book = QueueBook(queues, totals, {}, {"org.a": 8 * HOUR}, usage_weight=1.0,
                     usage_half_life_s=HOUR)
    assert book.history["org.a"] == pytest.approx(1.0)  # 8 GPU-hours / (8 GPUs x 1 h)
    assert book.history["org"] == pytest.approx(1.0)
    assert book.history["other"] == 0.0
    off = QueueBook(queues, totals, {}, {"org.a": 8 * HOUR}, usage_weight=0.0)
    assert set(off.history.values()) == {0.0}
