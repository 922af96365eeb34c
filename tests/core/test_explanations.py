"""Reason sentences name what blocks the workload and the thing to act on (issue 10, finding 6)."""

from __future__ import annotations

from dataclasses import replace

from builders import job, node, queue, state
from corral.core import reasons as R
from corral.core import schedule
from corral.core.model import WorkerResources, Workload

NOW = 100_000.0


def test_price_cap_quotes_the_cheapest_node_the_workload_may_use() -> None:
    nodes = [node("l4").model("L4").price(0.28), node("h100").model("H100").price(2.25)]
    plan = schedule(state(nodes, [queue("q")], [job("x").queue("q").models("H100").max_price(1.0)]),
                    NOW)
    reason = plan.pending["x"]
    assert reason.code == R.PRICE_CAP_TOO_LOW
    assert "2.25" in reason.message and "0.28" not in reason.message
    assert dict(reason.details)["cheapest_allowed"] == 2.25


def test_too_large_names_the_resource_that_binds() -> None:
    big_ram = Workload("x", "q", WorkerResources(gpus=1, memory_mib=100 * 1024))
    small = [replace(node("n").gpus(2).build(), memory_mib=64 * 1024)]
    plan = schedule(state(small, [queue("q")], [big_ram]), NOW)
    reason = plan.pending["x"]
    assert reason.code == R.NO_NODE_LARGE_ENOUGH
    assert "100 GiB RAM" in reason.message and "64 GiB" in reason.message
    assert "GPUs" not in reason.message.split(";")[1]
    assert dict(reason.details)["field"] == "memory"


def test_a_share_with_memory_is_described_by_both() -> None:
    w = job("x").queue("q").share(milli=100, mem=70 * 1024).build()
    busy = job("b").queue("q").gpus(1).not_preemptible().running(("n", (0,)))
    plan = schedule(state([node("n").gpus(1)], [queue("q")], [busy, w]), NOW)
    assert "0.1 GPU (with 70 GiB of its memory" in plan.pending["x"].message


def test_reserved_for_gang_names_the_gang_and_its_reason_says_how_long() -> None:
    nodes = [node("a").gpus(2), node("b").gpus(2)]
    work = [job("r").queue("q").gpus(1).not_preemptible().running(("a", (0,)), since=NOW - 10),
            job("gang").queue("q").gpus(2).gang(2).submitted(0),
            job("one").queue("q").gpus(1).submitted(5)]
    plan = schedule(state(nodes, [queue("q")], work), NOW)
    assert [r.workload_id for r in plan.reservations] == ["gang"]
    assert plan.pending["one"].code == R.RESERVED_FOR_GANG
    assert "reserved for gang" in plan.pending["one"].message
    gang = plan.pending["gang"].message
    assert "are reserved for it" in gang and "waiting for r" in gang and "holds for another" in gang


def test_protected_by_min_runtime_names_who_and_until_when() -> None:
    work = [job("low").queue("q").gpus(1).min_runtime(3600).running(("n", (0,)), since=NOW - 600),
            job("high").queue("q").gpus(1).priority(5)]
    plan = schedule(state([node("n").gpus(1)], [queue("q")], work), NOW)
    reason = plan.pending["high"]
    assert reason.code == R.PROTECTED_BY_MIN_RUNTIME
    assert "low" in reason.message and "50 min" in reason.message
    assert dict(reason.details)["evictable_at"] == NOW - 600 + 3600
