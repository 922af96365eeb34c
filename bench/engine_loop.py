"""The corral half of the engine benchmarks (`slurm_launch.py`, `ray_launch.py`): the same
one-GPU `true` workloads stored in a fresh SQLite store, the control loop stepped in-process on a
real backend until every one has ended, the seconds of each loop stage summed.

    elapsed_s, detail = run_until_done(backend, work, jobs, cpu=1, interval=0.0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.backends.base import Backend, InventorySource
from corral.control import ControlLoop, ControlSettings, Leadership
from corral.control.loop import StepReport
from corral.control.submission import _Accepted, _row, _store_accepted, stored_form
from corral.core.model import Node, Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url


def seed(store: Store, source: InventorySource, jobs: int, work: Path, *, cpu: float,
         provider: str, nodes: Callable[[Node], bool] = lambda n: True) -> None:
    """The backend's nodes (those `nodes` keeps), one queue, `jobs` one-GPU workloads."""
    store.upgrade()
    with store.write() as c:
        P.sync_nodes(c, [{"name": provider}], [n for n in source.inventory() if nodes(n)])
        P.upsert_queue(c, Queue("default", quota_gpus=10_000))
    spec = WorkloadSpec.model_validate({"name": "j", "queue": "default", "gpus": 1,
                                        "cpu": cpu, "memory": "64MiB", "command": ["true"],
                                        "checkpoint_dir": str(work / "ckpt")})
    body = stored_form(spec)
    with store.write() as c:
        _store_accepted(c, [_Accepted([_row(f"j{i:05d}", f"j{i:05d}", spec, "bench", body,
                                            time.time())], "bench") for i in range(jobs)])


def run_until_done(backend: Backend, work: Path, jobs: int, *, cpu: float, provider: str,
                   interval: float | None = 0.0, timeout: float = 1200.0,
                   nodes: Callable[[Node], bool] = lambda n: True) -> tuple[float, dict[str, Any]]:
    """Seconds from the first step until every workload succeeded or failed, and what the
    steps did: {steps, launched, states, corral_stage_s}. `interval`: seconds between step
    starts (0: as fast as it goes); None: `ControlLoop.run` with `corral up`'s defaults (a
    step soon after each event, at most once per `coalesce_s`, else every `interval_s`)."""
    assert isinstance(backend, InventorySource)
    store = Store(sqlite_url(work / "corral.db"))
    seed(store, backend, jobs, work, cpu=cpu, provider=provider, nodes=nodes)
    loop = ControlLoop(store, backend, settings=ControlSettings(
        checkpoint_root=work / "ckpt"), leadership=Leadership(store, holder="bench"))
    if interval is None:
        return _run_as_served(loop, store, jobs, timeout)
    steps, launched, stages, counts = 0, 0, dict[str, float](), dict[str, int]()
    started = time.perf_counter()
    try:
        while True:
            began = time.perf_counter()
            report = loop.step()
            steps, launched = steps + 1, launched + report.launched
            for k, v in report.stages.items():
                stages[k] = stages.get(k, 0.0) + v
            # the loop's own view says when nothing is active any more; the store confirms
            # (a count each step was 5% of the loop's time, charged to corral)
            if not loop.live.records or steps % 50 == 0:
                with store.read() as c:
                    counts = W.count_by_state(c)
                if counts.get("succeeded", 0) + counts.get("failed", 0) >= jobs:
                    break
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"corral did not finish: {counts}")
            time.sleep(max(0.0, interval - (time.perf_counter() - began)))
        elapsed = time.perf_counter() - started
    finally:
        loop.launches.close()
        store.close()
    return elapsed, {"steps": steps, "launched": launched, "states": counts,
                     "corral_stage_s": {k: round(v, 2) for k, v in sorted(stages.items())}}


def _run_as_served(loop: ControlLoop, store: Store, jobs: int, timeout: float
                   ) -> tuple[float, dict[str, Any]]:
    """`run_until_done` with the loop's own `run` on a thread, as `corral up` runs it; the
    steps are counted by an observer, which ends the run once every workload has ended."""
    stop, done_at = threading.Event(), [0.0]
    steps, launched, stages, counts = [0], [0], dict[str, float](), dict[str, int]()

    def observe(report: StepReport) -> None:
        steps[0] += 1
        launched[0] += report.launched
        for k, v in report.stages.items():
            stages[k] = stages.get(k, 0.0) + v
        if not loop.live.records or steps[0] % 50 == 0:
            with store.read() as c:
                counts.clear()  # this count's states only (not an earlier one's left over)
                counts.update(W.count_by_state(c))
            if counts.get("succeeded", 0) + counts.get("failed", 0) >= jobs:
                done_at[0] = time.perf_counter()
                stop.set()

    loop.observers.append(observe)
    thread = threading.Thread(target=loop.run, args=(stop,), name="control-loop")
    started = time.perf_counter()
    thread.start()
    try:
        if not stop.wait(timeout):
            raise TimeoutError(f"corral did not finish: {counts}")
    finally:
        stop.set()
        thread.join()  # `run` closes the launch pool
        store.close()
    return done_at[0] - started, {
        "steps": steps[0], "launched": launched[0], "states": counts,
        "steps_by_event": loop.wake.by_event, "steps_by_interval": loop.wake.by_interval,
        "corral_stage_s": {k: round(v, 2) for k, v in sorted(stages.items())}}
