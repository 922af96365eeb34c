"""GPU faults in the replay: one GPU cordoned (the live health monitor's rule), or its node.

    fault (node n, GPU d) ──> cordon d (per-GPU) or n (whole node) ──> stop the work on it
    sick for gpu_fault_s  ──> healthy since then
    healthy for gpu_recover_after_s ──> `desired` lets it go ──> it takes work again

The rule is `corral.core.device_cordons`, the one `corral.control.device_cordons` runs live: a
fault takes one device out; when every device of a node is out, the node goes out whole
(`node_wide`); a device returns once healthy for `recover_after_s` (`desired`); while out, its
free room is held from new work by a stand-in nomination (`holds`), passed to each cycle as the
live snapshot passes it. With `device_cordons` off every fault cordons its node (what corral did
before per-GPU cordons, and what a node-level health check does), so the two are compared on
the same faults.

Faults per node: a Poisson process of rate gpu_count / gpu_mtbf_s (each GPU's faults at mean
`gpu_mtbf_s`, superposed), the faulty GPU drawn uniformly, from a generator of the node's own
seeded from (seed, node index): the same faults at the same times whatever is cordoned, so a
per-GPU and a whole-node run of one seed meet the same faults. A fault on a device already out
(or on a node out whole) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from corral.core.device_cordons import desired, holds, node_wide
from corral.core.model import Node, Nomination, Workload
from corral.sim.failures import FailureModel

__all__ = ["Cordon", "DeviceFaults"]

_DUE_SLACK_S = 1e-3


@dataclass(frozen=True, slots=True)
class Cordon:
    """What a fault takes out: `devices` of `node`, or the whole node (`whole`)."""

    node: str
    devices: tuple[int, ...]
    whole: bool


@dataclass
class DeviceFaults:
    """The cordon state of the replay's GPU faults; the replay owns the clock and the work."""

    model: FailureModel
    nodes: Sequence[Node]
    seed: int = 0
    #: devices out per node (per-GPU cordons)
    out: dict[str, set[int]] = field(default_factory=dict)
    #: nodes out whole because of GPU faults
    whole: set[str] = field(default_factory=set)
    sick: dict[str, set[int]] = field(default_factory=dict)
    healthy_since: dict[str, dict[int, float]] = field(default_factory=dict)
    faults: int = 0
    #: GPU-seconds of capacity cordoned, closed intervals only (`cordoned_gpu_s` adds open ones)
    _closed_gpu_s: float = 0.0
    _since: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {n.id: n for n in self.nodes}
        self._rngs = {n.id: np.random.default_rng([self.seed, 17, i])
                      for i, n in enumerate(self.nodes)}

    @property
    def on(self) -> bool:
        return self.model.gpu_mtbf_s is not None

    def next_fault(self, node_id: str) -> tuple[float, int]:
        """Seconds to the node's next GPU fault, and which GPU."""
        assert self.model.gpu_mtbf_s is not None
        node, rng = self.by_id[node_id], self._rngs[node_id]
        gap = float(rng.exponential(self.model.gpu_mtbf_s / max(node.gpu_count, 1)))
        return gap, int(rng.integers(max(node.gpu_count, 1)))

    def fault(self, now: float, node_id: str, device: int) -> Cordon | None:
        """GPU `device` of `node_id` faults at `now`: what to take out (None: it is out
        already). The caller stops the work there and takes the node out when `whole`."""
        node = self.by_id[node_id]
        if node_id in self.whole or device in self.out.get(node_id, ()):
            return None
        self.faults += 1
        self.sick.setdefault(node_id, set()).add(device)
        self.healthy_since.get(node_id, {}).pop(device, None)
        out = self.out.setdefault(node_id, set())
        if not self.model.device_cordons or node_wide(out | {device}, node.gpu_count):
            for d in sorted(out):
                self._close(now, node_id, d)
            out.clear()
            self.whole.add(node_id)
            for d in range(node.gpu_count):
                self._since[(node_id, d)] = now
            return Cordon(node_id, tuple(range(node.gpu_count)), whole=True)
        out.add(device)
        self._since[(node_id, device)] = now
        return Cordon(node_id, (device,), whole=False)

    def clear(self, now: float, node_id: str, device: int) -> None:
        """The fault of `device` clears at `now`: healthy from now on."""
        self.sick.get(node_id, set()).discard(device)
        self.healthy_since.setdefault(node_id, {})[device] = now

    def recover(self, now: float, node_id: str) -> Cordon | None:
        """What of `node_id` returns at `now` by the live rule (`desired`): the devices that
        have been healthy for `gpu_recover_after_s`, or the node once none of its GPUs is sick
        and all have been. None: nothing returns yet."""
        node = self.by_id[node_id]
        sick = self.sick.get(node_id, set())
        since = self.healthy_since.get(node_id, {})
        recover_s = self.model.gpu_recover_after_s
        # the check is due at (clear + recover_s); in floats (clear + recover_s) - clear may
        # fall an ulp short of recover_s, and a device seen as not yet due would stay out for
        # good (no later check comes): look a millisecond later
        due = now + _DUE_SLACK_S
        if node_id in self.whole:
            current = tuple(range(node.gpu_count))
            # the node's sick devices (healthy_since only for those that had a fault)
            if desired(tuple(sorted(since)), sick, since, due, recover_s) or sick:
                return None
            self.whole.discard(node_id)
            for d in current:
                self._close(now, node_id, d)
            return Cordon(node_id, current, whole=True)
        out = self.out.get(node_id, set())
        keep = set(desired(tuple(sorted(out)), sick, since, due, recover_s))
        back = tuple(sorted(out - keep))
        for d in back:
            out.discard(d)
            self._close(now, node_id, d)
        return Cordon(node_id, back, whole=False) if back else None

    def out_nodes(self) -> list[str]:
        """The nodes with a GPU out now (per-GPU cordons)."""
        return [n for n, ds in self.out.items() if ds]

    def holds(self, running: Iterable[Workload]) -> tuple[Nomination, ...]:
        """The stand-in nominations of the devices out now (`corral.core.device_cordons`);
        `running` must hold every running workload on `out_nodes` (others are ignored)."""
        bad = {n: (self.by_id[n], tuple(sorted(ds))) for n, ds in self.out.items() if ds}
        return holds(bad, running) if bad else ()

    def cordoned_gpu_s(self, now: float) -> float:
        """GPU-seconds of capacity out because of GPU faults until `now`."""
        return self._closed_gpu_s + sum(max(now - t, 0.0) for t in self._since.values())

    def _close(self, now: float, node_id: str, device: int) -> None:
        start = self._since.pop((node_id, device), None)
        if start is not None:
            self._closed_gpu_s += now - start
