"""The latest measured use of every GPU (`corral.backends.device_use`), kept in memory.

Agents send each device's utilisation and memory in use with their heartbeat, once per sample
(the health probe's interval, 10 s by default); `corral up`'s local backend samples its own
host with its health probe (`RecordingProbe`). The control plane keeps only the latest sample
per (node, device), with the time it was taken on the server's clock: a write per sample that
arrives, never a pass over every node, and nothing in the store (a sample is worth seconds;
history belongs to Prometheus, which scrapes `corral_gpu_utilization_ratio` and
`corral_gpu_memory_used_bytes`). The API's node view and /metrics read it.

One board per store (`board_for`): the API, the loop and /metrics of one control plane share
it; a second control plane in the same process (tests) has its own. A replica that restarts
forgets the samples; the next heartbeats bring them back within one interval. With several
API replicas each shows the samples of the heartbeats it answered (TODO: share them if HA
replicas ever split agents between them).

A sample speaks for a hold only if it was taken at or after the hold began (`judges`): work
holds its GPUs from placement while an agent sends the sample it took up to one interval
before, so without this a new holder was shown beside its predecessor's (or an empty GPU's)
0% and called "held, barely used". A hold begins, for this, when its workers are seen running
(`store.workloads.Held.began`, the attempt's `started_at`): a GPU that is still being set up is
not idle. An older sample is shown as "no sample since this hold began": no flag, and no
holder named on its gauge series.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from corral.backends.device_use import DeviceUse
from corral.backends.health import DeviceHealth, GpuHealthProbe

__all__ = ["DeviceUseBoard", "RecordingProbe", "UseCutoffs", "UseSample", "board_for",
           "judges", "samples_of"]

#: bounds of the cut-offs (`corral up --gpu-idle-below / --gpu-use-stale`)
STALE_S_RANGE = (1.0, 86_400.0)


@dataclass(frozen=True, slots=True)
class UseSample:
    """One device's latest measured use, `at` on the control plane's clock."""

    device: int
    utilization: float
    memory_used_bytes: int
    memory_total_bytes: int
    at: float


@dataclass(frozen=True, slots=True)
class UseCutoffs:
    """When a sample says something (server settings, `corral up --gpu-idle-below` and
    `--gpu-use-stale`; the API, /metrics, the Pool page and `corral nodes` use these values):

    idle_below: a GPU held by work and measured under this busy (0..1) is "held, barely used";
    stale_s: a sample older than this says nothing of what the GPU does now (left out of the
    node's use and of /metrics). The defaults are those of issue 14's first release."""

    idle_below: float = 0.1
    stale_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0.0 < self.idle_below <= 1.0:
            raise ValueError(f"--gpu-idle-below must be over 0 and at most 1 (a fraction of "
                             f"busy time, 0.1 = 10%), not {self.idle_below:g}")
        lo, hi = STALE_S_RANGE
        if not lo <= self.stale_s <= hi:
            raise ValueError(f"--gpu-use-stale must be {lo:g} to {hi:g} seconds (a sample's "
                             f"age), not {self.stale_s:g}")

    def fresh(self, sample: UseSample, now: float) -> bool:
        return now - sample.at <= self.stale_s

    def idle_held(self, sample: UseSample, now: float, held: bool) -> bool:
        """Held (by work the caller may see) and measured under `idle_below` recently."""
        return held and self.fresh(sample, now) and sample.utilization < self.idle_below


def judges(sample: UseSample, began: float | None) -> bool:
    """Whether `sample` says anything of a hold that began at `began` (module docstring): taken
    at or after it, both on the server's clock. A hold not running yet (None) has no sample."""
    return began is not None and sample.at >= began


class DeviceUseBoard:
    """node id -> device -> its latest `UseSample`. Thread-safe (the API answers heartbeats in
    a thread pool while /metrics reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[int, UseSample]] = {}
        #: the server's settings (set once by `corral up`); read by every view of the board
        self.cutoffs = UseCutoffs()

    def record(self, node_id: str, samples: Iterable[UseSample]) -> None:
        """Keep each sample unless the board holds a newer one for its device."""
        with self._lock:
            devices = self._nodes.setdefault(node_id, {})
            for s in samples:
                old = devices.get(s.device)
                if old is None or old.at <= s.at:
                    devices[s.device] = s

    def of(self, node_id: str) -> dict[int, UseSample]:
        with self._lock:
            return dict(self._nodes.get(node_id, {}))

    def all(self) -> dict[str, dict[int, UseSample]]:
        """A copy of every node's samples (for /metrics: one pass per scrape)."""
        with self._lock:
            return {n: dict(d) for n, d in self._nodes.items()}

    def forget(self, node_id: str) -> None:
        with self._lock:
            self._nodes.pop(node_id, None)


_BOARDS: weakref.WeakKeyDictionary[Any, DeviceUseBoard] = weakref.WeakKeyDictionary()
_BOARDS_LOCK = threading.Lock()


def board_for(store: Any) -> DeviceUseBoard:
    """The board of the control plane that owns `store` (module docstring)."""
    with _BOARDS_LOCK:
        board = _BOARDS.get(store)
        if board is None:
            board = _BOARDS[store] = DeviceUseBoard()
        return board


def samples_of(use: Iterable[DeviceUse], at: float) -> list[UseSample]:
    return [UseSample(u.index, u.utilization, u.memory_used_bytes, u.memory_total_bytes, at)
            for u in use]


class RecordingProbe(GpuHealthProbe):
    """A health probe that also samples use into `board` as `node_id`'s, at each check (the
    local backend's own host: `corral up` checks its GPUs every `--gpu-probe-interval`)."""

    def __init__(self, inner: GpuHealthProbe, node_id: str, board: DeviceUseBoard) -> None:
        self.inner, self.node_id, self.board = inner, node_id, board
        self.available, self.unavailable_reason = inner.available, inner.unavailable_reason

    def check(self, now: float) -> list[DeviceHealth]:
        devices = self.inner.check(now)
        try:
            use = self.inner.sample(now)
        except Exception:  # measuring use never costs the health check
            use = []
        if use:
            self.board.record(self.node_id, samples_of(use, now))
        return devices

    def sample(self, now: float) -> list[DeviceUse]:
        return self.inner.sample(now)

    def close(self) -> None:
        self.inner.close()

