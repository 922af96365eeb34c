"""Capacity's running totals (free share per node, whole free devices) always match the
per-device truth, whatever sequence of takes, gives and scratch tries happens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.core import Node, WorkerAssignment
from corral.core.snapshot import Capacity, NodeTable

NODES = [Node(f"n{i}", "p", "H100", g, 80_000, 64_000, 512_000) for i, g in enumerate((1, 2, 4, 8))]

op = st.tuples(st.integers(0, 3), st.integers(0, 7), st.sampled_from([100, 250, 500, 1000]),
               st.booleans(), st.booleans())


@given(st.lists(op, max_size=40))
def test_running_totals_match_devices(ops: list[tuple[int, int, int, bool, bool]]) -> None:
    cap = Capacity(NodeTable.build(NODES))
    held: list[tuple[int, WorkerAssignment]] = []
    for node, device, milli, give_back, in_scratch in ops:
        n = NODES[node]
        d = device % n.gpu_count
        if give_back and held:
            i, a = held.pop()
            cap.give(i, a, 1000, 1000)
        elif cap.free_milli[node, d] >= milli and (milli < 1000 or cap.free_milli[node, d] == 1000):
            a = WorkerAssignment(0, n.id, (d,), milli, 80 * milli)
            if in_scratch:
                with cap.scratch([node]):
                    cap.take(node, a, 1000, 1000)
            else:
                cap.take(node, a, 1000, 1000)
                held.append((node, a))
        assert cap.consistent()
