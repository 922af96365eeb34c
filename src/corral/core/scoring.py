"""A scoring policy: which score plugins rank nodes, their weights, and which device picker
chooses GPUs on the chosen node. The placer (placement.py) reads it; the cycle, the simulator's
policies and the fill benchmarks build it (`Scoring.from_weights`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from corral.core.fit import Shape
from corral.core.plugins.base import REGISTRY, BestFitPicker, DevicePicker, ScorePlugin
from corral.core.snapshot import Capacity, FloatArray, IntArray


@dataclass(frozen=True)
class Scoring:
    """A scoring policy: weighted plugins and a device picker. `key` identifies it in caches."""

    key: str
    plugins: tuple[tuple[ScorePlugin, float], ...]
    picker: DevicePicker = field(default_factory=BestFitPicker)

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, float],
        params: Mapping[str, Mapping[str, object]] | None = None,
        picker: DevicePicker | None = None,
        key: str | None = None,
        seed: int = 0,
    ) -> Scoring:
        unknown = sorted(set(weights) - set(REGISTRY))
        if unknown:
            raise ValueError(f"unknown score plugin(s) {unknown}; known: {sorted(REGISTRY)}")
        params = params or {}
        # Every plugin gets the cycle's seed: one that draws random numbers must use it.
        plugins = tuple(
            (REGISTRY[n](seed=seed, **dict(params.get(n, {}))), float(w))
            for n, w in sorted(weights.items())
            if w
        )
        key = key or ",".join(f"{n}={w:g}" for n, w in sorted(weights.items()))
        return cls(key, plugins, picker or _picker_of(plugins))

    @property
    def node_local(self) -> bool:
        return all(p.node_local for p, _ in self.plugins)

    @property
    def state_local(self) -> bool:
        """True when every plugin that is not static, and the device picker, read of a node only
        its capacity state and fixed size (`ScorePlugin.state_local`): their answers can then be
        memoised by node state."""
        return getattr(self.picker, "state_local", False) and all(
            getattr(p, "static", False) or (p.node_local and getattr(p, "state_local", False))
            for p, _ in self.plugins
        )

    @cached_property
    def dynamic_one(self) -> tuple[tuple[ScorePlugin, float], ...] | None:
        """The plugins whose scores change during the cycle (node-local, not static), when
        every one of them can score one node in plain Python (`score_one`); else None."""
        dynamic = tuple((p, w) for p, w in self.plugins
                        if p.node_local and not getattr(p, "static", False))
        return dynamic if all(hasattr(p, "score_one") for p, _ in dynamic) else None

    def score_one(self, cap: Capacity, shape: Shape, node: int) -> float:
        """`score(..., local=True, static=False)` of one node that one worker of `shape` fits
        on, in plain Python: the same float (the plugins' `score_one`, summed in the same order
        from 0.0). Only where `dynamic_one` is not None."""
        assert self.dynamic_one is not None
        total = 0.0
        for plugin, weight in self.dynamic_one:
            total += weight * plugin.score_one(cap, shape, node)  # type: ignore[attr-defined]
        return total

    def score(
        self, cap: Capacity, shape: Shape, nodes: IntArray, local: bool | None = None,
        static: bool | None = None,
    ) -> FloatArray:
        """Weighted sum of the plugins' scores; `local` and `static` select plugins by kind."""
        total = np.zeros(nodes.shape, dtype=np.float64)
        for plugin, weight in self.plugins:
            if local is not None and plugin.node_local != local:
                continue
            if static is not None and getattr(plugin, "static", False) != static:
                continue
            total += weight * plugin.score(cap, shape, nodes)
        return total


def _picker_of(plugins: Sequence[tuple[ScorePlugin, float]]) -> DevicePicker:
    # A plugin that knows how to pick devices (FGD does) picks them; the heaviest one wins.
    for plugin, _ in sorted(plugins, key=lambda pw: -pw[1]):
        if hasattr(plugin, "pick"):
            return plugin  # type: ignore[return-value]
    return BestFitPicker()
