"""A single worker's "can this ever fit" answered from the pool's node classes is the answer the
whole pool gives (the check runs on tens of classes instead of thousands of nodes)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.control.submission import node_classes
from corral.core import schedule
from corral.core.constraints import unmet_constraint
from corral.core.model import CapacityKind, ClusterState, Health, Node, Queue
from corral.spec import WorkloadSpec

MODELS = ("H100", "A100", "L4")

NODES = st.lists(st.builds(
    lambda i, m, g, price, kind, rack, cordoned: Node(
        f"n{i}", "p", m, g, 81920 if m != "L4" else 24576, 64_000, 512_000,
        price_per_gpu_hour=price, capacity_kind=kind, rack=f"r{rack}", cordoned=cordoned,
        nvlink_domain=f"nvl{i}", health=Health.HEALTHY),
    st.integers(0, 10_000), st.sampled_from(MODELS), st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([1.0, 2.0, 4.0]), st.sampled_from(list(CapacityKind)), st.integers(0, 2),
    st.booleans()), min_size=1, max_size=40, unique_by=lambda n: n.id)

SPECS = st.builds(
    lambda gpus, models, cap, cpu, memory: WorkloadSpec.model_validate({
        "name": "w", "queue": "q", "gpus": gpus, "gpu_models": models, "cpu": cpu,
        "memory": memory, "command": ["x"],
        **({"max_price_per_gpu_hour": cap} if cap else {})}),
    st.sampled_from([0.5, 1, 2, 4, 8, 16]), st.lists(st.sampled_from(MODELS), max_size=2),
    st.sampled_from([None, 1.5, 3.0]), st.sampled_from([1, 32, 100]),
    st.sampled_from(["1GiB", "400GiB", "1TiB"]))


def _never_fits(unit, nodes, queues):  # what Submissions._diagnose computes
    found = unmet_constraint(unit, nodes)
    if found is not None:
        return found.code
    nodes = tuple(dataclasses.replace(n, cordoned=False, health=Health.HEALTHY) for n in nodes)
    reason = schedule(ClusterState(nodes, queues, (unit,)), 0.0).pending.get(unit.id)
    return reason.code if reason is not None and reason.unresolvable else None


@settings(max_examples=150, deadline=None)
@given(nodes=NODES, spec=SPECS)
def test_single_worker_answer_from_classes_equals_the_whole_pool(nodes, spec) -> None:
    queues = (Queue("q", quota_gpus=64),)
    unit = spec.to_core("candidate", 0.0)[0]
    assert unit.workers == 1
    assert _never_fits(unit, node_classes(nodes), queues) == _never_fits(unit, nodes, queues)


def test_a_large_pool_is_a_few_classes() -> None:
    nodes = [Node(f"n{i}", "p", MODELS[i % 3], 8, 81920, 64_000, 512_000, rack=f"r{i % 4}",
                  nvlink_domain=f"nvl{i}") for i in range(10_000)]
    assert len(node_classes(nodes)) == 12
