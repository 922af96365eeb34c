"""A corral control plane on a real engine, stepped by the test: a SQLite store, the backend,
node health and the control loop on the system clock (`ControlPlane.start`).

One harness for the chaos tests (tests/chaos/plane.py: a training job killed and resumed) and
the workflow tests on a real engine (tests/integration/plane.py): each adds only how it submits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from corral.backends.base import Backend
from corral.control import ControlLoop, ControlSettings, Leadership, Submissions
from corral.control.health import HealthMonitor
from corral.core.model import Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url
from corral.store.workloads import WorkloadRecord

__all__ = ["ControlPlane"]

T = TypeVar("T")
P_ = TypeVar("P_", bound="ControlPlane")


@dataclass
class ControlPlane:
    store: Store
    backend: Backend
    loop: ControlLoop
    queue: str
    ckpt_root: Path
    submissions: Submissions

    @classmethod
    def start(cls: type[P_], tmp: Path, backend: Backend, *, queue: str, grace_s: float = 5.0,
              store: Store | None = None) -> P_:
        """A plane over `backend`, its store in `tmp` (or `store`), whose first step adds the
        engine's nodes to the pool; `queue` gets a quota of every GPU the engine has."""
        if store is None:
            store = Store(sqlite_url(tmp / "corral.db"))
            store.upgrade()
        settings = ControlSettings(checkpoint_root=tmp / "checkpoints", stop_grace_s=grace_s,
                                   interval_s=0.1)
        loop = ControlLoop(store, backend, settings=settings, leadership=Leadership(store),
                           health=HealthMonitor(store, backend))  # it adds the engine's nodes
        plane = cls(store, backend, loop, queue, settings.checkpoint_root, Submissions(store))
        loop.step()  # the backend's nodes join the pool
        with store.write() as c:
            gpus = sum(n.gpu_count for n in P.list_nodes(c))
            P.upsert_queue(c, Queue(queue, quota_gpus=float(gpus)))
        return plane

    def submit_spec(self, body: dict[str, Any]) -> list[str]:
        """Submit `body` (the plane's queue and a small CPU and memory ask unless it says
        otherwise) as user "ann"; the ids of the rows it made (an array or a service: several)."""
        spec = WorkloadSpec.model_validate(
            {"queue": self.queue, "cpu": 0.1, "memory": 64, **body})
        return [r.id for r in self.submissions.submit(spec, "ann", time.time())]

    def record(self, wid: str) -> WorkloadRecord:
        with self.store.read() as c:
            rec = W.get_workload(c, wid)
        assert rec is not None, f"no workload {wid}"
        return rec

    def ended(self, *wids: str) -> bool:
        return all(self.record(w).state in ("succeeded", "failed", "cancelled") for w in wids)

    def launched_at(self, wid: str) -> float:
        """When its first attempt was handed to the backend."""
        with self.store.read() as c:
            return min(e.at for e in W.list_events(c, workload_id=wid) if e.reason == "Launched")

    def nodes_of(self, wid: str, attempt: int) -> list[str]:
        with self.store.read() as c:
            placed = W.assignments_of(c, [(wid, attempt)])[(wid, attempt)]
        return [a.node_id for a in sorted(placed, key=lambda a: a.worker)]

    def workload_events(self, wid: str) -> list[tuple[str, str, str]]:
        with self.store.read() as c:
            return [(e.kind, e.reason, e.to_state) for e in W.list_events(c, workload_id=wid)]

    def node_events(self) -> list[tuple[str, str]]:
        with self.store.read() as c:
            return [(e.reason, e.subject) for e in W.list_events(c) if e.kind == "node"]

    def run_until(self, probe: Callable[[], T | None], what: str, timeout: float = 90.0) -> T:
        """Step the control loop until `probe` is truthy; fail (not time) if it never is."""
        deadline = time.monotonic() + timeout
        while True:
            self.loop.step()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}; workloads: {self._summary()}")
            time.sleep(self.loop.settings.interval_s)

    def _summary(self) -> list[tuple[str, str, str, int]]:
        with self.store.read() as c:
            return [(r.id, r.state, r.reason_code, r.attempt) for r in W.list_workloads(c)]
