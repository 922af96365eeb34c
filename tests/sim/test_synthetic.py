"""The synthetic generator: seeded, at the load asked for, and every task fits some node."""

from __future__ import annotations

import pytest

from corral.core.placement import Placer
from corral.core.snapshot import Capacity, NodeTable
from corral.sim.fill import _shape
from corral.sim.synthetic import SyntheticSpec, synthetic_trace


def test_same_seed_same_trace() -> None:
    spec = SyntheticSpec(tasks=300, nodes=12, seed=5)
    assert synthetic_trace(spec) == synthetic_trace(spec)
    assert synthetic_trace(spec).tasks != synthetic_trace(SyntheticSpec(tasks=300, nodes=12, seed=6)).tasks


@pytest.mark.parametrize("load", [0.5, 1.2])
def test_offered_load(load: float) -> None:
    trace = synthetic_trace(SyntheticSpec(tasks=2000, nodes=24, load=load, seed=1))
    # The generator sets the mean over the whole arrival span; offered_load() looks at the
    # middle 90% of arrivals, where a Poisson stream is as dense: close, not equal.
    assert trace.offered_load() == pytest.approx(load, rel=0.05)


def test_mix_and_fit() -> None:
    trace = synthetic_trace(SyntheticSpec(tasks=2000, nodes=12, seed=2))
    kinds = {"cpu": 0, "share": 0, "gang": 0}
    for t in trace.tasks:
        kinds["cpu"] += t.gpus == 0
        kinds["share"] += t.shares_gpu
        kinds["gang"] += t.workers > 1
    assert all(v > 0 for v in kinds.values())
    cap = Capacity(NodeTable.build(trace.nodes))
    placer = Placer(cap)
    shapes = {_shape(t, {}) for t in trace.tasks}
    assert len(shapes) < 400  # round request sizes: tasks share shapes
    assert all(placer.never_fits(s) is None for s in shapes)


def test_bad_spec() -> None:
    with pytest.raises(ValueError, match="load must be positive"):
        SyntheticSpec(load=0)
    with pytest.raises(ValueError, match="sum to <= 1"):
        SyntheticSpec(cpu_only_fraction=0.6, share_fraction=0.6)
