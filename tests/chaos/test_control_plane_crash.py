"""Chaos: the control plane is killed (SIGKILL) while a gang runs on a real engine, and started
again. The work keeps running meanwhile; the new control plane re-adopts it (same attempt, no
second launch, no restart) and sees it through to the fault-free result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.control import Submissions
from corral.core.model import Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url
from corral.store.lease import read_lease

from .plane import QUEUE, fault_free, progress, results, train_args

pytestmark = pytest.mark.slow

STEPS, EVERY, STEP_S = 120, 10, 0.05
PROC = Path(__file__).with_name("control_proc.py")


def wait(probe: Callable[[], object], what: str, proc: subprocess.Popen[bytes] | None = None,
         timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the control plane exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def engine(name: str, request: pytest.FixtureRequest, tmp_path: Path
           ) -> tuple[list[str], dict[str, str]]:
    """The engine arguments of control_proc.py and its environment."""
    if name == "slurm":
        return ["slurm"], request.getfixturevalue("slurm_cluster").env
    pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]'")
    cluster = request.getfixturevalue("ray_cluster")
    return (["--address", cluster.address, "--node-root", str(tmp_path / "nodes"), "ray"],
            dict(os.environ))


@pytest.mark.parametrize("engine_name", [pytest.param("slurm", marks=pytest.mark.slurm),
                                         pytest.param("ray", marks=pytest.mark.ray)])
def test_a_killed_control_plane_readopts_running_work_without_duplicating_it(
        engine_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db = sqlite_url(tmp_path / "corral.db")
    store = Store(db)
    store.upgrade()
    engine_args, env = engine(engine_name, request, tmp_path)
    argv = [sys.executable, str(PROC), "--db", db, "--work", str(tmp_path / "work"),
            "--checkpoints", str(tmp_path / "checkpoints"), *engine_args]

    def control_plane(n: int) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"control-{n}.log", "wb")  # noqa: SIM115 - the process owns it
        with log:
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def state(wid: str) -> W.WorkloadRecord:
        with store.read() as c:
            rec = W.get_workload(c, wid)
        assert rec is not None
        return rec

    first = control_plane(1)
    try:
        def pool_joined() -> bool:
            with store.read() as c:
                return len([n for n in P.list_nodes(c) if n.gpu_count]) >= 2
        wait(pool_joined, "the engine's nodes to join the pool", first)
        with store.write() as c:
            P.upsert_queue(c, Queue(QUEUE, quota_gpus=8))
        ckpt = tmp_path / "ckpt"
        spec = WorkloadSpec.model_validate({
            "name": "crash", "queue": QUEUE, "workers": 2, "gpus": 1, "cpu": 0.1, "memory": 64,
            "command": train_args(STEPS, STEP_S, EVERY), "checkpoint_dir": str(ckpt),
            "restart_backoff": 0})
        wid = Submissions(store).submit(spec, "ann", time.time())[0].id
        wait(lambda: state(wid).state == "running" and progress(ckpt, 1, 0) >= EVERY,
             "the gang to run", first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        at_crash = progress(ckpt, 0, 0)
        wait(lambda: progress(ckpt, 0, 0) > at_crash, "the work to go on without a control plane")
        second = control_plane(2)
        try:
            wait(lambda: state(wid).state in ("succeeded", "failed"), "the job to end", second)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    rec = state(wid)
    assert (rec.state, rec.attempt, rec.restart_count) == ("succeeded", 0, 0)
    with store.read() as c:
        launched = [e for e in W.list_events(c, workload_id=wid) if e.reason == "Launched"]
    assert len(launched) == 1
    if engine_name == "slurm":  # every job Slurm ever ran for it: one per worker, once
        names = request.getfixturevalue("slurm_cluster").run(
            "squeue", "-h", "-t", "all", "-o", "%j").stdout.split()
        assert sorted(n for n in names if n.startswith(f"corral.{wid}.")) == [
            f"corral.{wid}.0.0", f"corral.{wid}.0.1"]
    assert results(ckpt, 2) == fault_free(tmp_path, 2, STEPS, EVERY)
    with store.read() as c:
        lease = read_lease(c, "scheduler")
    assert lease is not None and lease.epoch == 2  # the second process took over
    store.close()
