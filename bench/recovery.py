"""Recovery from a node failure, on a real Ray cluster and a real Slurm (both on this machine).

    python bench/recovery.py [--engines ray,slurm] [--trials 3] [--interval 1.0]

Per engine and trial: a control plane (SQLite store, the engine's backend, node health, the
control loop every --interval seconds in a thread, as `corral up` runs it) runs the example
training job (examples/train_ckpt.py, 2 workers x 1 GPU, a checkpoint every
--checkpoint-every steps of --step-seconds). Once both workers are past two checkpoints, the
node of worker 0 is killed (trial i of n: (i + 0.5)/n of a checkpoint interval after the
second checkpoint, so that the kills spread over the interval as real failures do) (Ray: its raylet and every process of the node, SIGKILL; Slurm: its
slurmd, SIGKILL, as the chaos tests do). Then, from the store's events and the job's own event
log:

- detect_seconds: kill -> the control plane records the loss (the first "WorkerFailed" event or
  restart transition of the job). On Slurm this is bounded below by Slurm itself declaring the
  node DOWN (SlurmdTimeout=3 s in the test cluster).
- restart_seconds: detection -> every worker of the restarted gang is computing again (its
  "resume" event in the job's log).
- lost_work_seconds: the gang's progress before the restart (the least advanced worker's last
  step of the failed attempt) minus the step it resumed from, times the step time: the work
  that had to be done again. At most one checkpoint interval when checkpoints are gang-wide.
- checkpoint_interval_seconds: --checkpoint-every x --step-seconds.

Figures are medians over the trials. Prints one line per trial, then, as its last line, a JSON
object keyed by engine. Starts and stops its own clusters (never `ray stop`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from corral.backends.base import Backend
from corral.control import ControlLoop, ControlSettings, Leadership, Submissions
from corral.control.health import HealthMonitor
from corral.core.model import Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url

TRAIN = Path(__file__).resolve().parents[1] / "examples" / "train_ckpt.py"


def job_events(ckpt: Path, worker: int) -> list[dict[str, Any]]:
    path = ckpt / f"events-w{worker}.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def last_step(ckpt: Path, worker: int, attempt: int) -> int:
    return max((e["step"] for e in job_events(ckpt, worker)
                if e["attempt"] == attempt and e["event"] == "step"), default=0)


class Engine:
    """One engine's cluster and how to break and mend it."""

    name = ""

    def backend(self, work: Path) -> Backend:
        raise NotImplementedError

    def kill(self, backend: Backend, node_id: str) -> None:
        raise NotImplementedError

    def mend(self) -> None:
        raise NotImplementedError


class RayEngine(Engine):
    name = "ray"

    def __init__(self, stack: ExitStack, fast: bool = False) -> None:
        from corral.testing.raycluster import RayTestCluster

        self.cluster = stack.enter_context(RayTestCluster(connect=True))
        self.killed: list[str] = []

    def backend(self, work: Path) -> Backend:
        from corral.backends.ray import RayBackend

        return RayBackend(work / "ray", node_root=str(work / "nodes"))

    def kill(self, backend: Backend, node_id: str) -> None:
        from corral.backends.base import InventorySource

        assert isinstance(backend, InventorySource)
        ray_id = next(dict(n.labels)["ray.io/node-id"] for n in backend.inventory()
                      if n.id == node_id)
        name = next(k for k, v in self.cluster.node_ids.items() if v == ray_id)
        self.cluster.kill_node(name)

    def mend(self) -> None:
        import ray

        self.cluster.add_node()
        while ray.cluster_resources().get("GPU") != 8.0:
            time.sleep(0.2)


class SlurmEngine(Engine):
    name = "slurm"

    def __init__(self, stack: ExitStack, fast: bool = False) -> None:
        from corral.testing.slurm import SlurmCluster

        self.cluster = stack.enter_context(SlurmCluster())
        self.killed: list[str] = []
        self.fast = fast

    def backend(self, work: Path) -> Backend:
        from corral.backends.slurm import SlurmBackend

        return SlurmBackend(work / "slurm", env=self.cluster.env,
                            not_responding_is_lost=self.fast)

    def kill(self, backend: Backend, node_id: str) -> None:
        self.cluster.kill_node(node_id)
        self.killed.append(node_id)

    def mend(self) -> None:
        while self.killed:
            self.cluster.restart_node(self.killed.pop())


def trial(engine: Engine, args: argparse.Namespace, work: Path, phase: float
          ) -> dict[str, float]:
    """One failure, `phase` (0..1) of a checkpoint interval after the gang's second checkpoint:
    trials spread the kill over the interval, as failures are."""
    store = Store(sqlite_url(work / "corral.db"))
    store.upgrade()
    backend = engine.backend(work)
    settings = ControlSettings(checkpoint_root=work / "checkpoints", interval_s=args.interval,
                               stop_grace_s=5.0)
    loop = ControlLoop(store, backend, settings=settings, leadership=Leadership(store),
                       health=HealthMonitor(store, backend))
    loop.step()  # the engine's nodes join the pool
    with store.write() as c:
        P.upsert_queue(c, Queue("bench", quota_gpus=float(sum(
            n.gpu_count for n in P.list_nodes(c)))))
    ckpt = work / "ckpt"
    command = [sys.executable, str(TRAIN), "--steps", str(args.steps), "--step-seconds",
               str(args.step_seconds), "--checkpoint-every", str(args.checkpoint_every)]
    spec = WorkloadSpec.model_validate({
        "name": "recovery", "queue": "bench", "workers": 2, "gpus": 1, "cpu": 0.1,
        "memory": 64, "command": command, "checkpoint_dir": str(ckpt), "restart_backoff": 0,
        "max_restarts": 3})
    wid = Submissions(store).submit(spec, "bench", time.time())[0].id
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        kill_step = 2 * args.checkpoint_every + int(phase * args.checkpoint_every)
        wait(lambda: min(last_step(ckpt, w, 0) for w in (0, 1)) >= kill_step,
             "the gang to pass two checkpoints")
        with store.read() as c:
            victim = W.assignments_of(c, [(wid, 0)])[(wid, 0)][0].node_id
        killed_at = time.time()
        engine.kill(backend, victim)
        wait(lambda: all(any(e["attempt"] >= 1 and e["event"] in ("resume", "start")
                             for e in job_events(ckpt, w)) for w in (0, 1)),
             "the restarted gang to compute again", timeout=180)
    finally:
        stop.set()
        thread.join(timeout=60)
        end_work(store, backend, wid)
    return measure(store, wid, ckpt, killed_at, args)


def end_work(store: Store, backend: Backend, wid: str) -> None:
    """Stop what still runs of the job so that the next trial finds the cluster free."""
    with store.read() as c:
        rec = W.get_workload(c, wid)
    attempts = range(rec.attempt + 1) if rec is not None else range(0)
    for attempt in attempts:
        backend.stop(wid, attempt, 0.0, "benchmark over")
    wait(lambda: all(s.state.ended for s in backend.poll(time.time())), "the job to stop")
    for attempt in attempts:
        backend.release(wid, attempt)


def measure(store: Store, wid: str, ckpt: Path, killed_at: float,
            args: argparse.Namespace) -> dict[str, float]:
    with store.read() as c:
        seen = [e for e in W.list_events(c, workload_id=wid) if e.at >= killed_at - 1 and (
            e.reason in ("WorkerFailed", "WorkerLost") or e.to_state == "pending")]
    detected = min(e.at for e in seen)
    back = max(min(e["t"] for e in job_events(ckpt, w) if e["attempt"] >= 1) for w in (0, 1))
    resumed = min(e["step"] for w in (0, 1) for e in job_events(ckpt, w)
                  if e["attempt"] >= 1 and e["event"] in ("resume", "start"))
    progress = min(last_step(ckpt, w, 0) for w in (0, 1))
    return {"detect_seconds": detected - killed_at, "restart_seconds": back - detected,
            "lost_work_seconds": max(0, progress - resumed) * args.step_seconds,
            "checkpoint_interval_seconds": args.checkpoint_every * args.step_seconds,
            "progress_step": progress, "resumed_step": resumed}


def wait(probe: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


def machine() -> str:
    return (f"{platform.node()}: {os.cpu_count()} CPUs, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engines", default="ray,slurm")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--interval", type=float, default=1.0, help="control loop period (s)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--step-seconds", type=float, default=0.05)
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--slurm-not-responding-is-lost", action="store_true",
                   help="treat a Slurm node that stops answering as lost before it is DOWN")
    args = p.parse_args()
    print(f"machine: {machine()}")
    print(f"loop every {args.interval:g} s; checkpoint every "
          f"{args.checkpoint_every * args.step_seconds:g} s")
    engines = {"ray": RayEngine, "slurm": SlurmEngine}
    summary: dict[str, dict[str, float]] = {}
    for name in args.engines.split(","):
        runs = []
        with ExitStack() as stack:
            engine = engines[name](stack, args.slurm_not_responding_is_lost)
            for i in range(args.trials):
                with tempfile.TemporaryDirectory(prefix=f"corral-recovery-{name}-") as tmp:
                    runs.append(trial(engine, args, Path(tmp), (i + 0.5) / args.trials))
                engine.mend()
                print(f"{name} trial {i + 1}: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in runs[-1].items()), flush=True)
        summary[name] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]
                         if not k.endswith("_step")}
        summary[name]["trials"] = len(runs)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
