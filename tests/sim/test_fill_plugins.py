"""The fill experiment's placement plugins (corral.core.plugins: random, bestfit, fgd,
balanced-fgd): their math on worked examples, their device picks, and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from builders import node
from corral.core.fit import Shape, worker_slots
from corral.core.model import WorkerAssignment, WorkerResources
from corral.core.placement import Scoring
from corral.core.plugins import REGISTRY, TaskType, typical_tasks
from corral.core.plugins.bestfit import BestFit
from corral.core.plugins.fragmentation import BalancedFragmentation, Fragmentation
from corral.core.plugins.random_fit import RandomFit
from corral.core.snapshot import Capacity, NodeTable


def capacity(*nodes: tuple[int, int], used: dict[tuple[int, int], int] | None = None) -> Capacity:
    """Nodes given as (gpus, cores); `used` takes milli from (node, device)."""
    built = [node(f"n{i}").gpus(g).cpu(c * 1000).build() for i, (g, c) in enumerate(nodes)]
    cap = Capacity(NodeTable.build(built))
    for (n, d), milli in (used or {}).items():
        cap.take(n, WorkerAssignment(0, f"n{n}", (d,), milli, 0), 0, 0)
    return cap


def share(milli: int, cores: int = 0) -> Shape:
    return Shape(WorkerResources(gpu_milli=milli, cpu_milli=cores * 1000))


def whole(gpus: int, cores: int = 0) -> Shape:
    return Shape(WorkerResources(gpus=gpus, cpu_milli=cores * 1000))


def test_plugins_are_registered() -> None:
    assert {"random", "bestfit", "fgd", "balanced-fgd"} <= set(REGISTRY)


def test_bestfit_worked_example() -> None:
    # The largest node has 128 cores and 8 GPUs (docstring of corral.core.plugins.bestfit).
    cap = capacity((2, 16), (8, 96), (8, 128))
    scores = BestFit().score(cap, whole(1, 8), np.array([0, 1]))
    assert scores == pytest.approx([1 - 0.5 * 8 / 128 - 0.5 * 1 / 8, 1 - 0.5 * 88 / 128 - 0.5 * 7 / 8])


def test_random_is_seeded_and_spreads() -> None:
    cap = capacity(*[(8, 96)] * 10)
    picks = [int(np.argmax(RandomFit(seed=s).score(cap, whole(1), np.arange(10)))) for s in range(200)]
    again = [int(np.argmax(RandomFit(seed=s).score(cap, whole(1), np.arange(10)))) for s in range(200)]
    assert picks == again
    assert len(set(picks)) == 10  # every node gets chosen by some seed


def test_random_picks_a_fitting_device() -> None:
    cap = capacity((4, 96), used={(0, 0): 900, (0, 1): 300})
    picker = RandomFit(seed=1)
    devices = {picker.pick(cap, share(500), 0) for _ in range(50)}
    assert devices == {(1,), (2,), (3,)}


def test_fgd_docstring_example() -> None:
    # One task type, 0.5 GPU: a node with devices free 1000 and 300 has F = 300.
    fgd = Fragmentation(workload=[TaskType(0, 1, 500)])
    cap = capacity((2, 96), used={(0, 1): 700})
    assert fgd.fragmentation(cap, np.array([0]))[0] == pytest.approx(300)
    assert fgd.gradient(cap, share(500), np.array([0]))[0] == pytest.approx(0)
    assert fgd.gradient(cap, share(250), np.array([0]))[0] == pytest.approx(-250)
    assert fgd.pick(cap, share(250), 0) == (1,)  # the 300 device: it removes fragmentation


def test_fgd_counts_all_free_gpus_when_cpu_is_short() -> None:
    fgd = Fragmentation(workload=[TaskType(8000, 1, 1000)])
    cap = capacity((4, 8))
    assert fgd.fragmentation(cap, np.array([0]))[0] == 0
    # A CPU-only task taking 4 cores leaves 4: the GPU task type can no longer run there.
    assert fgd.gradient(cap, Shape(WorkerResources(cpu_milli=4000)), np.array([0]))[0] == 4000


def test_fgd_prefers_the_node_that_fragments_less() -> None:
    # Whole-GPU and 0.5-share types; a 0.5 share should go where half a GPU is already used.
    fgd = Fragmentation(workload=[TaskType(0, 1, 1000), TaskType(0, 1, 500)])
    cap = capacity((2, 96), (2, 96), used={(1, 0): 500})
    scores = fgd.score(cap, share(500), np.array([0, 1]))
    assert scores[1] > scores[0]


def test_fgd_levels_round_scores_down() -> None:
    mix = [TaskType(0, 1, 1000, weight=0.5), TaskType(0, 1, 500, weight=0.45),
           TaskType(0, 1, 515, weight=0.05)]
    # A 0.02 share raises F by 15 milli on node 1 (free 520) and by 15.5 on node 2 (free 530).
    cap = capacity((2, 96), (2, 96), (2, 96), used={(1, 0): 480, (2, 0): 470})
    nodes = np.array([0, 1, 2])
    exact = Fragmentation(workload=mix).score(cap, share(20), nodes)
    coarse = Fragmentation(workload=mix, levels=100).score(cap, share(20), nodes)
    assert coarse == pytest.approx(np.floor(exact * 100) / 100)
    assert exact[1] != exact[2] and coarse[1] == coarse[2]  # near-equal nodes now tie


def test_balanced_fgd_docstring_example() -> None:
    # Typical GPU tasks: 1000 milli per 8000 milli-CPU (r = 0.125).
    mix = [TaskType(8000, 1, 1000)]
    cap = capacity((4, 16), (4, 64))
    plain = Fragmentation(workload=mix)
    balanced = BalancedFragmentation(workload=mix)
    cpu_only = Shape(WorkerResources(cpu_milli=8000))
    stranded = balanced.fragmentation(cap, np.array([0, 1])) - plain.fragmentation(cap, np.array([0, 1]))
    assert stranded == pytest.approx([2000, 0])
    grad = balanced.gradient(cap, cpu_only, np.array([0, 1])) - plain.gradient(cap, cpu_only, np.array([0, 1]))
    assert grad == pytest.approx([1000, 0])
    scores = balanced.score(cap, cpu_only, np.array([0, 1]))
    assert scores[1] > scores[0]


def test_typical_tasks_coverage_and_weights() -> None:
    tasks = [TaskType(1000, 1, 500)] * 6 + [TaskType(0)] * 3 + [TaskType(2000, 8, 1000)]
    assert [t.weight for t in typical_tasks(tasks, 1.0)] == pytest.approx([0.6, 0.3, 0.1])
    top = typical_tasks(tasks, 0.9)
    assert sum(t.weight for t in top) == pytest.approx(1.0) and len(top) == 2


def test_fgd_without_a_workload_uses_the_default_mix() -> None:
    cap = capacity((8, 96))
    assert np.isfinite(Fragmentation().score(cap, whole(2), np.array([0]))).all()
    assert np.isfinite(BalancedFragmentation().score(cap, whole(2), np.array([0]))).all()


def test_scoring_uses_fgd_as_device_picker() -> None:
    scoring = Scoring.from_weights({"fgd": 1.0, "bestfit": 0.01})
    assert isinstance(scoring.picker, Fragmentation)


states = st.lists(st.integers(0, 1000), min_size=4, max_size=4)


@given(free=states, milli=st.integers(1, 999), cores=st.integers(0, 40),
       picker=st.sampled_from(["random", "fgd", "balanced-fgd"]))
def test_picks_respect_the_fit_rules(free: list[int], milli: int, cores: int, picker: str) -> None:
    """Whatever the state, a picked device has room; None only when no device has."""
    cap = capacity((4, 32), used={(0, d): 1000 - f for d, f in enumerate(free) if f < 1000})
    plugin = REGISTRY[picker](seed=3, workload=[TaskType(4000, 1, 500), TaskType(0, 2, 1000)]) \
        if picker != "random" else REGISTRY[picker](seed=3)
    shape = share(milli, cores)
    got = plugin.pick(cap, shape, 0)  # type: ignore[attr-defined]
    fits = [d for d, f in enumerate(free) if f >= milli]
    if not fits:
        assert got is None
    else:
        assert got is not None and got[0] in fits
    assert (worker_slots(cap, shape.resources, np.array([0]))[0] >= 1) == (bool(fits) and cores <= 32)
