"""One node's score in plain Python, equal bit for bit to the numpy batch code (issue 10).

The placer re-scores a node or two at a time: those that changed since a shape last looked and
whose state its memo has not seen. A numpy call costs microseconds however small its array, and
scoring one node with FGD and bestfit took ~30 of them (~100 us of the 2,000-node cycle's
~1,000 such calls); the same arithmetic on Python ints and floats is a few microseconds. Numpy
stays for wide batches (a shape's first look, many changed nodes).

Equal, not close: ties between nodes go to node order, so one ulp can move a placement. Integer
sums are exact either way, and one IEEE operation on two floats rounds the same in Python and
numpy; three things must be done numpy's way:

- a sum of floats along an axis (FGD's weighted sum over task types): numpy adds pairwise
  (`pairwise_sum`), not left to right;
- `np.round(x, d)` is `x * 10**d`, rounded half to even, divided back (`round_like_numpy`), not
  Python's correctly rounded `round(x, d)`: `np.round(0.0000015, 6)` is 2e-06, `round(...)` 1e-06;
- `np.exp` is numpy's own (SIMD) code, which may differ from `math.exp` by an ulp: callers get
  it from numpy once per distinct argument (`Fragmentation.score_one`).

`tests/core/test_one_node_scores.py` pins every one-node function to its numpy twin on random
nodes, batches and mixes (Hypothesis), ties and rounding edges included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_PW_BLOCK = 128  # numpy's PW_BLOCKSIZE: longer runs are split in two


def pairwise_sum(values: Sequence[float]) -> float:
    """`np.sum` of a row of float64, in numpy's order: the reduction starts from the identity
    (0.0) and adds the pairwise sum of the row (numpy's `pairwise_sum`: under 8 values left to
    right; up to 128, eight interleaved accumulators combined as a tree, then the tail; longer,
    split at a multiple of 8 near the middle).

    >>> xs = [1e16] + [1.0] * 15  # left to right, every 1.0 is lost; numpy keeps 14 of them
    >>> sum(xs), pairwise_sum(xs)
    (1e+16, 1.0000000000000014e+16)
    """
    return 0.0 + _pairwise(values, 0, len(values))


def _pairwise(a: Sequence[float], lo: int, n: int) -> float:
    if n < 8:
        res = -0.0  # numpy starts from -0.0, which keeps a sum of -0.0 values -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= _PW_BLOCK:
        r0, r1, r2, r3, r4, r5, r6, r7 = a[lo : lo + 8]
        i = lo + 8
        end = lo + n - n % 8
        while i < end:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for k in range(i, lo + n):
            res += a[k]
        return res
    half = n // 2
    half -= half % 8
    return _pairwise(a, lo, half) + _pairwise(a, lo + half, n - half)


def round_like_numpy(x: float, decimals: int) -> float:
    """`np.round(x, decimals)` for one float: scale by 10**decimals, round half to even (as
    `np.rint`), scale back, keeping the sign of a zero."""
    scale = 10.0**decimals  # exact for the small powers used (1e6 is 10.0**6 exactly)
    y = x * scale
    if not math.isfinite(y):
        return y / scale
    rounded = float(round(y))  # round() of a float with no digits: half to even, exact
    if rounded == 0.0:
        rounded = math.copysign(0.0, y)
    return rounded / scale


class PlainMix:
    """A resolved workload mix (`fragmentation._Mix`) as Python lists, and its expected
    fragmentation of one node state (`frag`), equal to `_Mix.frag` of that state's row."""

    def __init__(
        self, cpu_only_weight: float, balance: float, gpu_per_cpu: float,
        thresholds: list[int], share_index: list[int], need: list[int], cpu: list[int],
        weight: list[float], access: list[list[bool]],
    ) -> None:
        self.cpu_only_weight, self.balance, self.gpu_per_cpu = (
            cpu_only_weight, balance, gpu_per_cpu)
        self.thresholds, self.access = thresholds, access
        # per task type: (its share's index in `thresholds`, devices needed, CPU, weight)
        self.types = list(zip(share_index, need, cpu, weight, strict=True))

    def frag(self, free: Sequence[int], cpu: int, model: int) -> float:
        """Expected fragmentation (milli-GPU) of one node state: free milli per device (-1
        past the node's devices), free CPU (may be negative after a request), model code."""
        f = [x if x > 0 else 0 for x in free]
        total = float(sum(f))
        out = total * self.cpu_only_weight
        if self.balance:
            stranded = total - (cpu if cpu > 0 else 0) * self.gpu_per_cpu
            out = out + self.balance * (stranded if stranded >= 0 else 0.0)
        if not self.types:
            return out
        whole = int(total)
        count: list[int] = []
        small: list[int] = []
        for threshold in self.thresholds:
            big = [x for x in f if x >= threshold]
            count.append(len(big))
            small.append(whole - sum(big))  # integers: exact in any order
        access = self.access[model]
        terms = [
            (small[s] if count[s] >= need and cpu >= need_cpu and access[t] else total) * w
            for t, (s, need, need_cpu, w) in enumerate(self.types)
        ]
        return out + pairwise_sum(terms)
