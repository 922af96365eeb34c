"""The kept opening's running use per queue (`WarmStart.run_milli`) when running work holds no
GPU, and what an update that raises leaves behind (found by G and R, 2026-12-05: a CPU-only job
ending after its queue's last GPU job raised KeyError, and every later warm cycle raised too)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.core.test_churn import CONFIG
from tests.core.test_warm_start import warm_plan

from builders import job, node, queue
from corral.core import ClusterState, schedule
from corral.core.model import WorkerAssignment, Workload, WorkloadState
from corral.core.warm_start import WarmStart


def _running(name: str, gpus: int, devices: tuple[int, ...]) -> Workload:
    w = job(name).queue("q").gpus(gpus).cpu(1000).build()
    return replace(w, state=WorkloadState.RUNNING, started_at=0.0,
                   assignments=(WorkerAssignment(0, "a", devices, 1000 * gpus, 0),))


CPU, GPU = _running("cpu", 0, ()), _running("gpu", 1, (0,))
WAITING = job("next").queue("q").gpus(2).build()
HISTORY = [(CPU, GPU, WAITING), (CPU, WAITING), (WAITING,), (CPU, WAITING), ()]


def _state(work: tuple[Workload, ...]) -> ClusterState:
    return ClusterState((node("a").gpus(8).build(),), (queue("q"),), work)


def test_cpu_only_running_work_leaving_plans_as_the_cold_cycle() -> None:
    warm = WarmStart(rebuild_share=10.0)  # every change through the update, on a tiny state
    for k, work in enumerate(HISTORY):
        state = _state(work)
        assert warm_plan(state, 10.0 * k, k, warm) == schedule(state, 10.0 * k, CONFIG, seed=k)
    assert warm.rebuilds == 1


def test_an_update_that_raises_costs_one_cycle_not_every_later_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    warm = WarmStart(rebuild_share=10.0)
    schedule(_state(HISTORY[0]), 0.0, CONFIG, warm=warm)
    forget = WarmStart._forget

    def broken(self: WarmStart, w: Workload) -> None:
        monkeypatch.setattr(WarmStart, "_forget", forget)  # once
        raise RuntimeError("an unforeseen defect half-way through the update")

    monkeypatch.setattr(WarmStart, "_forget", broken)
    with pytest.raises(RuntimeError):
        schedule(_state(HISTORY[1]), 10.0, CONFIG, warm=warm)
    for k, work in enumerate(HISTORY[1:], start=1):  # rebuilt once, then kept again
        state = _state(work)
        assert warm_plan(state, 10.0 * k, k, warm) == schedule(state, 10.0 * k, CONFIG, seed=k)
    assert warm.rebuilds == 2
