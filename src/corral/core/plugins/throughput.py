"""THROUGHPUT: place work where it gains most relative to what the others would gain.

After the idea of Gavel (Narayanan et al., "Heterogeneity-Aware Cluster Scheduling Policies for
Deep Learning Workloads", OSDI 2020): allocate in effective throughput, not raw GPUs. The same
job runs up to 10x faster on one model than another, and the ratio differs per job; a fast device
is best spent on the work that gains most from it, not on whoever asked first. Written from the
paper's idea, not its code: corral places one workload at a time, so instead of Gavel's linear
program this is a per-shape score that the placer adds to the others.

**Rule.** A workload states its throughput per model, T(m) (`Workload.throughput`). Its
*normalised rate* on m is r(m) = T(m) / max T (1 on its fastest model; a model it does not name
counts as its slowest named one: no evidence it runs faster there). The others' *reference rate*
R(m) is the GPU-weighted mean of r(m) over the work competing for the pool (`market`, computed by
the caller from the waiting work; absent: 1 for every model). `contention` c in [0, 1] is how much
the others compete (`market`: waiting GPUs over free GPUs, capped at 1). Then

    advantage(m) = r(m) / R(m) ** c          score(m) = advantage(m) / max over models

With nobody waiting (c = 0) every workload simply prefers its fastest model. Under contention
(c = 1) a workload prefers the model where it is *comparatively* fast: the model it is least
slowed down on, against how much everyone else is slowed down there.

Worked example (c = 1). Job A runs 10x faster on a V100 than on a K80 (r: V100 1.0, K80 0.1);
job B 1.7x (r: V100 1.0, K80 0.6); the waiting work averages R: V100 1.0, K80 0.3.
A: advantage V100 = 1.0, K80 = 0.1 / 0.3 = 0.33, so V100 scores 1 and K80 0.33.
B: advantage V100 = 1.0, K80 = 0.6 / 0.3 = 2.0, so K80 scores 1 and V100 0.5.
B leaves the V100 to A, whose job it speeds up 10x rather than 1.7x. Alone (c = 0), B takes the
V100: its own gain is all there is to count. When only B-like work waits, R(K80) = 0.6 and B's
advantage is 1 on both: ties go to the faster model (a 1e-3 term of r(m)).

Workloads that state no throughput score 1 everywhere (the plugin changes nothing for them).
Static: the score reads only a node's model, so the placer computes it once per shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Final

import numpy as np

from corral.core.fit import Shape
from corral.core.model import MILLI_PER_GPU, Workload
from corral.core.plugins.base import register
from corral.core.snapshot import Capacity, FloatArray, IntArray

THROUGHPUT: Final = "throughput"
#: ties between models of equal advantage go to the faster one
_TIE_BREAK: Final = 1e-3


def normalised(throughput: Iterable[tuple[str, float]]) -> dict[str, float]:
    """r(m) = T(m) / max T over the models named with a positive rate; {} when none is."""
    rates = {m: float(t) for m, t in throughput if t > 0}
    best = max(rates.values(), default=0.0)
    return {m: t / best for m, t in rates.items()} if best > 0 else {}


def rate_on(rates: Mapping[str, float], model: str) -> float:
    """r(model), a model not named counting as the slowest named one."""
    return rates.get(model, min(rates.values()))


def market(waiting: Iterable[Workload], free_gpus: float, models: Iterable[str]
           ) -> tuple[dict[str, float], float]:
    """The others' reference rates R(m) on `models` and the contention c (module docstring),
    from the work waiting for a cycle and the pool's free GPUs.

    R(m): GPU-weighted mean of r(m) over waiting work that states a throughput (1 where none
    does). c: waiting GPUs (all waiting work) over free GPUs, in [0, 1]; 1 when nothing is free.

    >>> from corral.core.model import WorkerResources
    >>> a = Workload("a", "q", WorkerResources(gpus=1), throughput=(("k80", 1.0), ("v100", 10.0)))
    >>> b = Workload("b", "q", WorkerResources(gpus=1), throughput=(("k80", 6.0), ("v100", 10.0)))
    >>> ref, c = market([a, b], free_gpus=4, models=["k80", "v100"])
    >>> {m: round(r, 2) for m, r in ref.items()}, c
    ({'k80': 0.35, 'v100': 1.0}, 0.5)
    """
    models = sorted(set(models))
    total = dict.fromkeys(models, 0.0)
    weight = 0.0
    gpus = 0.0
    for w in waiting:
        g = w.total_milli() / MILLI_PER_GPU
        gpus += g
        rates = normalised(w.throughput)
        if not rates:
            continue
        weight += g
        for m in models:
            total[m] += g * rate_on(rates, m)
    ref = {m: (total[m] / weight if weight > 0 else 1.0) for m in models}
    contention = 1.0 if free_gpus <= 0 else min(1.0, gpus / free_gpus)
    return ref, contention


@register(THROUGHPUT)
class Throughput:
    """Score = comparative advantage on the node's model (module docstring). Parameters:
    `reference` {model: R(m)} (default 1 for every model) and `contention` c in [0, 1]
    (default 1: the reference counts fully)."""

    name: ClassVar[str] = THROUGHPUT
    node_local: ClassVar[bool] = True
    static: ClassVar[bool] = True  # reads only the node's model

    def __init__(self, seed: int = 0, reference: Mapping[str, float] | None = None,
                 contention: float = 1.0) -> None:
        del seed  # deterministic: draws no random numbers
        if not 0.0 <= contention <= 1.0:
            raise ValueError(f"throughput contention must be in [0, 1], got {contention}")
        self.reference = dict(reference or {})
        self.contention = contention

    def advantage(self, rates: Mapping[str, float], model: str) -> float:
        ref = max(self.reference.get(model, 1.0), 1e-9)
        r = rate_on(rates, model)
        return float(r / ref**self.contention + _TIE_BREAK * r)

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        rates = normalised(shape.throughput)
        if not rates:
            return np.ones(nodes.shape, dtype=np.float64)
        names = cap.table.model_names
        by_code = np.array([self.advantage(rates, m) for m in names], dtype=np.float64)
        best = float(by_code.max()) if by_code.size else 1.0
        return np.asarray(by_code[cap.table.model[nodes]] / best, dtype=np.float64)
