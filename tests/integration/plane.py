"""A control plane on a real engine (store, backend, loop with the system clock), stepped by
the test: the harness of tests/chaos/plane.py, reduced to what workflow tests need."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

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

T = TypeVar("T")
QUEUE = "flows"


@dataclass
class Plane:
    store: Store
    backend: Backend
    loop: ControlLoop
    submissions: Submissions

    @classmethod
    def start(cls, tmp: Path, backend: Backend) -> Plane:
        store = Store(sqlite_url(tmp / "corral.db"))
        store.upgrade()
        settings = ControlSettings(checkpoint_root=tmp / "checkpoints", stop_grace_s=2.0,
                                   interval_s=0.1)
        loop = ControlLoop(store, backend, settings=settings, leadership=Leadership(store),
                           health=HealthMonitor(store, backend))  # it adds the engine's nodes
        loop.step()  # the backend's nodes join the pool
        with store.write() as c:
            gpus = sum(n.gpu_count for n in P.list_nodes(c))
            P.upsert_queue(c, Queue(QUEUE, quota_gpus=float(gpus)))
        return cls(store, backend, loop, Submissions(store))

    def submit(self, name: str, shell: str, **fields: Any) -> list[str]:
        spec = WorkloadSpec.model_validate({
            "name": name, "queue": QUEUE, "gpus": 1, "cpu": 0.1, "memory": 64, "shell": shell,
            **fields})
        return [r.id for r in self.submissions.submit(spec, "ann", time.time())]

    def record(self, wid: str) -> WorkloadRecord:
        with self.store.read() as c:
            rec = W.get_workload(c, wid)
        assert rec is not None
        return rec

    def launched_at(self, wid: str) -> float:
        """When its first attempt was handed to the backend."""
        with self.store.read() as c:
            return min(e.at for e in W.list_events(c, workload_id=wid) if e.reason == "Launched")

    def ended(self, *wids: str) -> bool:
        return all(self.record(w).state in ("succeeded", "failed", "cancelled") for w in wids)

    def run_until(self, probe: Callable[[], T | None], what: str, timeout: float = 90.0) -> T:
        """Step the control loop until `probe` is truthy; fail (not time) if it never is."""
        deadline = time.monotonic() + timeout
        while True:
            self.loop.step()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}")
            time.sleep(self.loop.settings.interval_s)
