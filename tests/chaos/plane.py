"""A corral control plane on a real engine, driven by the test: store (SQLite), backend, node
health and the control loop with the system clock, plus the training job of examples/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train_ckpt.py"
QUEUE = "train"


def train_args(steps: int, step_seconds: float, every: int) -> list[str]:
    return [sys.executable, str(TRAIN), "--steps", str(steps), "--step-seconds",
            str(step_seconds), "--checkpoint-every", str(every)]


def fault_free(tmp: Path, workers: int, steps: int, every: int) -> dict[int, str]:
    """Each worker's result (SHA-256 of its weights) from a run that nothing interrupts."""
    out = {}
    for w in range(workers):
        env = {**os.environ, "CORRAL_WORKER_INDEX": str(w), "CORRAL_WORKERS": str(workers),
               "CORRAL_CHECKPOINT_DIR": str(tmp / "reference")}
        subprocess.run(train_args(steps, 0.0, every), env=env, check=True, capture_output=True,
                       timeout=120)
        out[w] = json.loads((tmp / "reference" / f"result-w{w}.json").read_text())["sha256"]
    return out


def results(ckpt: Path, workers: int) -> dict[int, str]:
    return {w: json.loads((ckpt / f"result-w{w}.json").read_text())["sha256"]
            for w in range(workers) if (ckpt / f"result-w{w}.json").exists()}


def events(ckpt: Path, worker: int) -> list[dict[str, Any]]:
    path = ckpt / f"events-w{worker}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def progress(ckpt: Path, worker: int, attempt: int) -> int:
    """The last step worker `worker` logged in `attempt` (0 before any)."""
    return max((e["step"] for e in events(ckpt, worker)
                if e["attempt"] == attempt and e["event"] == "step"), default=0)


@dataclass
class Plane:
    store: Store
    backend: Backend
    loop: ControlLoop
    ckpt_root: Path

    @classmethod
    def start(cls, tmp: Path, backend: Backend, *, grace_s: float = 5.0,
              store: Store | None = None) -> Plane:
        if store is None:
            store = Store(sqlite_url(tmp / "corral.db"))
            store.upgrade()
        settings = ControlSettings(checkpoint_root=tmp / "checkpoints", stop_grace_s=grace_s,
                                   interval_s=0.1)
        loop = ControlLoop(store, backend, settings=settings, leadership=Leadership(store),
                           health=HealthMonitor(store, backend))
        plane = cls(store, backend, loop, settings.checkpoint_root)
        loop.step()  # the backend's nodes join the pool
        with store.write() as c:
            gpus = sum(n.gpu_count for n in P.list_nodes(c))
            P.upsert_queue(c, Queue(QUEUE, quota_gpus=float(gpus)))
        return plane

    def submit(self, name: str, command: list[str], **fields: Any) -> str:
        spec = WorkloadSpec.model_validate({
            "name": name, "queue": QUEUE, "cpu": 0.1, "memory": 64, "command": command,
            **fields})
        return Submissions(self.store).submit(spec, "ann", time.time())[0].id

    def record(self, wid: str) -> WorkloadRecord:
        with self.store.read() as c:
            rec = W.get_workload(c, wid)
        assert rec is not None
        return rec

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
                pytest.fail(f"gave up waiting for {what}; workloads: {self._summary()}")
            time.sleep(self.loop.settings.interval_s)

    def _summary(self) -> list[tuple[str, str, str, int]]:
        with self.store.read() as c:
            return [(r.id, r.state, r.reason_code, r.attempt) for r in W.list_workloads(c)]
