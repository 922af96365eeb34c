"""One node scored in plain Python gives the very float numpy gives (issue 10).

The placer scores a node or two at a time in plain Python (`plugins.one_node`, the plugins'
`score_one`, `fit.worker_slots_one`, FGD's `pick`) and numpy for wide batches; both feed the
same argmax, where node order breaks exact ties, so they must agree to the last bit, not to a
tolerance. Random pools, node states, workload mixes and requests (Hypothesis); node states
drawn from a few values so that ties are common, and rounding edges (half a millionth) for
`np.round`'s twin. Whole plans, plain Python against numpy only, on the benchmark's snapshots:
`test_shared_scores.py`.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core import Node
from corral.core.fit import Shape, device_need, worker_slots, worker_slots_one
from corral.core.model import MILLI_PER_GPU, WorkerResources
from corral.core.placement import Scoring
from corral.core.plugins import one_node
from corral.core.plugins.bestfit import BestFit
from corral.core.plugins.fragmentation import BalancedFragmentation, Fragmentation, TaskType
from corral.core.snapshot import Capacity, NodeTable

pytestmark = pytest.mark.slow  # 9 tests, 14 s (-n 2 whole run, 2026-12-05, load 8-32)

MODELS = ("A100", "H100", "L40S")
MEMORY = (24_576, 40_960, 81_920)
SETTINGS = settings(max_examples=150, deadline=None)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(one_node).failed == 0


# -- the two numpy idioms ----------------------------------------------------------------------
_floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(rows=st.lists(st.lists(_floats, min_size=0, max_size=300), min_size=1, max_size=6),
       fill=st.integers(0, 300))
def test_pairwise_sum_is_numpys_row_sum(rows: list[list[float]], fill: int) -> None:
    # every row as long as the longest, padded with copies of its own values (repeated values:
    # ties and cancellations), and summed as FGD sums them: a product, then sum(axis=1)
    width = max(max(len(r) for r in rows), fill % 301)
    table = np.array([(r * (width // max(len(r), 1) + 1))[:width] if r else [0.0] * width
                      for r in rows], dtype=np.float64)
    weights = np.linspace(0.1, 1.0, width) if width else np.zeros(0)
    product = table * weights
    expected = product.sum(axis=1)
    for k in range(len(rows)):
        assert one_node.pairwise_sum(product[k].tolist()) == expected[k]


_edges = st.integers(-10**9, 10**9).map(lambda k: (k + 0.5) / 1e6)  # half a millionth


@SETTINGS
@given(x=st.one_of(_edges, _floats, st.floats(allow_nan=False, width=64)),
       decimals=st.sampled_from((0, 3, 6)))
def test_round_like_numpy_is_np_round(x: float, decimals: int) -> None:
    with np.errstate(over="ignore"):  # x * 10**decimals past the largest float: inf in both
        expected = float(np.round(np.array([x]), decimals)[0])
    found = one_node.round_like_numpy(x, decimals)
    assert found == expected or (math.isnan(found) and math.isnan(expected))
    assert math.copysign(1.0, found) == math.copysign(1.0, expected)


@SETTINGS
@given(deltas=st.lists(st.one_of(_floats.map(lambda x: round(x / 1e3, 6)), _edges), min_size=1,
                       max_size=40),
       scale=st.sampled_from((1000.0, 250.0, 3.0)), levels=st.sampled_from((0, 100)))
def test_fgds_sigmoid_of_one_gradient_is_numpys(deltas: list[float], scale: float,
                                                levels: int) -> None:
    # numpy's exp differs from math.exp by an ulp on about 1 argument in 20 on x86-64
    plugin = Fragmentation(scale_milli=scale, levels=levels)
    with np.errstate(over="ignore"):
        expected = plugin._sigmoid(np.array(deltas)).tolist()
    assert [plugin.sigmoid_one(d) for d in deltas] == expected


# -- random pools in random states --------------------------------------------------------------
_free_milli = st.sampled_from((0, 0, 250, 500, 500, 750, 1000, 1000, 1000, 300, 125, 999, 1))


@st.composite
def pools(draw: st.DrawFn) -> Capacity:
    """A few nodes of random sizes, each in a random state (devices often alike)."""
    count = draw(st.integers(1, 8))
    nodes = []
    for i in range(count):
        nodes.append(Node(
            id=f"n{i}", provider="p", gpu_model=draw(st.sampled_from(MODELS)),
            gpu_count=draw(st.sampled_from((0, 1, 2, 4, 8, 8))),
            gpu_memory_mib=draw(st.sampled_from(MEMORY)),
            cpu_milli=draw(st.sampled_from((16_000, 64_000, 128_000))),
            memory_mib=draw(st.sampled_from((65_536, 524_288)))))
    cap = Capacity(NodeTable.build(nodes))
    for n, node in enumerate(cap.table.nodes):
        for d in range(node.gpu_count):
            milli = draw(_free_milli)
            cap.free_milli[n, d] = milli
            # memory: in step with the share, or less (memory binds before milli)
            full = node.gpu_memory_mib * milli // MILLI_PER_GPU
            cap.free_mem[n, d] = draw(st.sampled_from((full, full // 2, 0)))
        cap.free_cpu[n] = draw(st.integers(0, node.cpu_milli // 1000)) * 1000
        cap.free_ram[n] = draw(st.integers(0, node.memory_mib))
    valid = cap.free_milli >= 0
    cap.whole_free = np.asarray((cap.free_milli == MILLI_PER_GPU).sum(axis=1), dtype=np.int64)
    cap.free_sum = np.asarray(np.where(valid, cap.free_milli, 0).sum(axis=1), dtype=np.int64)
    assert cap.consistent()
    return cap


_task_types = st.builds(
    TaskType, cpu_milli=st.sampled_from((0, 4000, 8000, 12_000, 32_000)),
    gpus=st.sampled_from((0, 1, 1, 2, 4, 8)),
    gpu_milli=st.sampled_from((250, 500, 1000, 1000, 300)),
    gpu_models=st.sampled_from(((), (), ("H100",), ("A100", "L40S"), ("B200",))),
    # equal weights make equal terms; odd ones make long float sums
    weight=st.one_of(st.sampled_from((1.0, 3.0)), st.floats(0.001, 100.0)))


@st.composite
def fgd_plugins(draw: st.DrawFn) -> Fragmentation:
    # up to 150 task types: numpy's pairwise sum switches form at 8 and splits past 128
    types = draw(st.lists(_task_types, min_size=0, max_size=150))
    cls = draw(st.sampled_from((Fragmentation, BalancedFragmentation)))
    return cls(workload=types or None, scale_milli=draw(st.sampled_from((1000.0, 250.0, 3.0))),
               levels=draw(st.sampled_from((0, 0, 100))))


_resources = st.one_of(
    st.builds(WorkerResources, gpus=st.integers(1, 8),
              cpu_milli=st.sampled_from((0, 8000, 16_000)),
              memory_mib=st.sampled_from((0, 65_536))),
    st.builds(WorkerResources, gpu_milli=st.sampled_from((125, 250, 300, 500, 999)),
              gpu_memory_mib=st.sampled_from((0, 0, 10_240)),
              cpu_milli=st.sampled_from((0, 4000, 12_000))),
    st.builds(WorkerResources, gpu_memory_mib=st.sampled_from((1, 10_240, 30_720, 81_920)),
              cpu_milli=st.sampled_from((0, 4000))),
    st.builds(WorkerResources, cpu_milli=st.sampled_from((1000, 8000)),
              memory_mib=st.sampled_from((0, 1024))),
)


def _fitting(cap: Capacity, r: WorkerResources) -> list[int]:
    slots = worker_slots(cap, r, np.arange(len(cap.table)))
    return [n for n in range(len(cap.table)) if slots[n] >= 1]


@SETTINGS
@given(cap=pools(), r=_resources)
def test_worker_slots_of_one_node_is_the_batch_count(cap: Capacity, r: WorkerResources) -> None:
    slots = worker_slots(cap, r, np.arange(len(cap.table))).tolist()
    assert [worker_slots_one(cap, r, n) for n in range(len(cap.table))] == slots


@SETTINGS
@given(cap=pools(), plugin=fgd_plugins(), r=_resources)
def test_fgd_of_one_node_is_numpys(cap: Capacity, plugin: Fragmentation, r: WorkerResources
                                   ) -> None:
    shape = Shape(r)
    nodes = _fitting(cap, r)
    if not nodes:
        return
    rows = np.array(nodes, dtype=np.int64)
    batch = plugin._score(cap, shape, rows).tolist()  # every fitting node in one numpy batch
    gradient = plugin.gradient(cap, shape, rows).tolist()
    for k, n in enumerate(nodes):
        assert plugin.gradient_one(cap, shape, n) == gradient[k]
        assert plugin.score_one(cap, shape, n) == batch[k]
        assert plugin.score_one(cap, shape, n) == plugin._score(cap, shape, rows[k : k + 1])[0]
    # the mix alone: expected fragmentation of each node as it stands
    mix = plugin.mix(cap.table)
    frag = mix.frag(cap.free_milli, cap.free_cpu, cap.table.model).tolist()
    for n in range(len(cap.table)):
        got = mix.plain.frag(cap.free_milli[n].tolist(), int(cap.free_cpu[n]),
                             int(cap.table.model[n]))
        assert got == frag[n]


@SETTINGS
@given(cap=pools(), r=_resources)
def test_bestfit_of_one_node_is_numpys(cap: Capacity, r: WorkerResources) -> None:
    plugin, shape = BestFit(), Shape(r)
    nodes = list(range(len(cap.table)))  # bestfit scores any node, fitting or not
    batch = plugin.score(cap, shape, np.array(nodes, dtype=np.int64)).tolist()
    assert [plugin.score_one(cap, shape, n) for n in nodes] == batch


@SETTINGS
@given(cap=pools(), r=_resources, weights=st.sampled_from((
    {"balanced-fgd": 1, "bestfit": 0.01, "gpu-model": 2, "price": 0.001},  # the default
    {"fgd": 0.7, "bestfit": 0.3}, {"bestfit": 1.0})))
def test_a_scorings_one_node_sum_is_numpys(cap: Capacity, r: WorkerResources,
                                            weights: dict[str, float]) -> None:
    scoring, shape = Scoring.from_weights(weights), Shape(r)
    assert scoring.dynamic_one is not None
    nodes = _fitting(cap, r)
    if not nodes:
        return
    batch = scoring.score(cap, shape, np.array(nodes, dtype=np.int64), local=True,
                          static=False).tolist()
    assert [scoring.score_one(cap, shape, n) for n in nodes] == batch


def _numpy_pick(plugin: Fragmentation, cap: Capacity, shape: Shape, node: int
                ) -> tuple[int, ...] | None:
    """FGD's device pick as numpy made it before the pick went to plain Python (the reference)."""
    r, free = shape.resources, cap.free_milli[node]
    if r.gpus:
        whole = np.flatnonzero(free == MILLI_PER_GPU)
        return tuple(int(d) for d in whole[: r.gpus]) if whole.size >= r.gpus else None
    if not r.fractional:
        return ()
    milli, mem = device_need(cap.table, r, np.array([node]))
    devices = np.flatnonzero((free >= milli[0]) & (cap.free_mem[node] >= mem[0]))
    if devices.size == 0:
        return None
    states = np.repeat(free[None, :], devices.size, axis=0)
    states[np.arange(devices.size), devices] -= milli[0]
    cpu = np.full(devices.size, cap.free_cpu[node] - r.cpu_milli, dtype=np.int64)
    model = np.full(devices.size, cap.table.model[node], dtype=np.int64)
    after = np.round(plugin.mix(cap.table).frag(states, cpu, model), 6)
    return (int(devices[np.lexsort((devices, free[devices], after))[0]]),)


@SETTINGS
@given(cap=pools(), plugin=fgd_plugins(), r=_resources)
def test_fgds_pick_is_the_numpy_pick(cap: Capacity, plugin: Fragmentation, r: WorkerResources
                                     ) -> None:
    shape = Shape(r)
    for n in range(len(cap.table)):
        assert plugin.pick(cap, shape, n) == _numpy_pick(plugin, cap, shape, n)
