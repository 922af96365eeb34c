"""Warm slots (`corral.backends.slurm_pilot`): the pilot's and the item's scripts (pure, run by
/bin/sh), how many pilots to submit, and on a real Slurm: single workers queued ahead run in
pilot jobs on their planned node, each its own worker (its environment, its log, its job id),
and a worker stopped while no pilot has taken it never runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import WorkerState, base
from corral.backends.slurm import SlurmBackend
from corral.backends.slurm_pilot import (
    JOB_ID_FILE,
    PILOT_KEY,
    PILOT_PREFIX,
    Pilots,
    item_script,
    pilot_script,
    taken_by,
)
from corral.testing.slurm import SlurmCluster

from .conftest import SHOW_ENV, eventually, make_spec

WAIT_FOR_FILE = ("import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n"
                 "    time.sleep(0.05)\n")


def run_pilot(pdir: Path, job: str, idle_s: float = 0.2, **array: str
              ) -> subprocess.CompletedProcess[str]:
    script = pdir / "pilot.sbatch"
    script.write_text(pilot_script(pdir, idle_s))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(["/bin/bash", str(script)], env={**env, "SLURM_JOB_ID": job, **array},
                          capture_output=True, text=True, timeout=30)


def test_a_pilot_runs_the_oldest_item_once_and_an_idle_one_leaves_its_mark(
        tmp_path: Path) -> None:
    pdir = tmp_path / "key"
    for d in ("queue", "claimed", "gone"):
        (pdir / d).mkdir(parents=True)
    wdir, log = tmp_path / "worker-0", tmp_path / "worker-0.log"
    wdir.mkdir()
    worker = tmp_path / "worker.sh"
    worker.write_text('echo "ran as $SLURM_JOB_ID"\n')
    (pdir / "queue" / "002.sh").write_text("echo second\n")
    (pdir / "queue" / "001.sh").write_text(item_script(wdir, log, worker))
    (pdir / "queue" / ".003.sh").write_text("echo hidden\n")  # not yet durable: not taken
    assert run_pilot(pdir, "41").returncode == 0
    assert log.read_text() == "ran as 41\n"
    assert (wdir / JOB_ID_FILE).read_text() == "41\n"
    assert sorted(p.name for p in (pdir / "queue").iterdir()) == [".003.sh", "002.sh"]
    (pdir / "queue" / "001b.sh").write_text(item_script(wdir, log, worker))
    # a pilot array's task: its id as squeue -r and scancel name it, not its SLURM_JOB_ID
    assert run_pilot(pdir, "45", SLURM_ARRAY_JOB_ID="40", SLURM_ARRAY_TASK_ID="2").returncode == 0
    assert (wdir / JOB_ID_FILE).read_text() == "40_2\n"
    assert run_pilot(pdir, "42").stdout == "second\n"
    idle = run_pilot(pdir, "43")  # nothing left it may take
    assert idle.returncode == 0 and idle.stdout == ""
    assert [p.name for p in (pdir / "gone").iterdir()] == ["43"]
    assert (pdir / "queue" / ".003.sh").exists()


def test_pilots_wanted_count_the_reserve_items_withdrawn_and_gone(tmp_path: Path) -> None:
    pilots = Pilots(tmp_path, warm=2, idle_s=1.0)
    k = pilots.key_of("gpu1", "gpu:1")
    k.queued = 8
    assert pilots.wanted(k) == 10
    k.submitted = 10
    k.queued += 1  # a GPU freed, one more worker queued: one more pilot
    assert pilots.wanted(k) == 1
    k.submitted += 1
    k.withdrawn += 1  # a queued worker stopped: the pilot meant for it is a spare now
    assert pilots.wanted(k) == 0
    for job in ("7", "8"):  # two pilots idled out: the reserve is short by two
        (k.dir / "gone" / job).touch()
    assert pilots.wanted(k) == 1
    assert list((k.dir / "gone").iterdir()) == []  # each mark counted once
    assert pilots.wanted(k) == 1


def test_a_larger_reserve_is_topped_up_once_half_of_it_is_used(tmp_path: Path) -> None:
    """warm=8: one sbatch per 4 workers queued, not one per launch; never an item without a
    pilot (a reserve short by more than it holds is topped up at once)."""
    pilots = Pilots(tmp_path, warm=8, idle_s=1.0)
    k = pilots.key_of("gpu1", "gpu:1")
    k.queued = 8
    assert pilots.wanted(k) == 16  # the first wave and the whole reserve
    k.submitted = 16
    for queued, wanted in ((9, 0), (10, 0), (11, 0), (12, 4)):
        k.queued = queued  # a GPU freed, its worker queued: a spare pilot takes it
        assert pilots.wanted(k) == wanted
    k.submitted += 4
    k.queued += 20  # a burst: 20 items, 8 spares
    assert pilots.wanted(k) == 20


def test_item_names_sort_as_they_were_queued(tmp_path: Path) -> None:
    pilots = Pilots(tmp_path, warm=1, idle_s=1.0)
    names = [pilots.item_name() for _ in range(50)]
    assert sorted(names) == names and len(set(names)) == 50


# --- on a real Slurm ---------------------------------------------------------------------------


@pytest.fixture
def cleanup(slurm_cluster: SlurmCluster) -> Iterator[None]:
    """Pilots queued ahead outlive a test: cancel everything, also when it failed."""
    yield
    slurm_cluster.cancel_all_jobs()


def states_of(backend: SlurmBackend, ids: list[str]) -> dict[str, WorkerState]:
    return {s.workload_id: s.state for s in backend.poll(time.time()) if s.workload_id in ids}


@pytest.mark.slurm
def test_single_workers_run_in_pilots_on_their_planned_node_each_its_own(
        slurm_cluster: SlurmCluster, tmp_path: Path, cleanup: None) -> None:
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=1,
                           pilot_idle_s=1.0)
    ids = [f"pil-{i}" for i in range(6)]  # 6 one-GPU workers on a 4-GPU node: two wait
    specs = [make_spec(wid).on("gpu1").devices(i % 4).python(SHOW_ENV).build()
             for i, wid in enumerate(ids)]
    assert backend.launch_many(specs) == [None] * 6
    assert all(PILOT_KEY in backend.records.find(wid, 0).engine for wid in ids)
    eventually(lambda: set(states_of(backend, ids).values()) == {WorkerState.SUCCEEDED},
               "every worker to succeed", timeout=90)
    jobs = {wid: taken_by(backend.records.find(wid, 0), 0) for wid in ids}  # the pilots' word
    assert len(set(jobs.values())) == 6  # each ran in a pilot of its own

    listed = {}  # job id -> (name, node), as squeue lists array tasks (ended ones too)
    for line in slurm_cluster.run("squeue", "-h", "-r", "-t", "all", "-o", "%i|%j|%N"
                                  ).stdout.split():
        job, name, node = line.split("|")
        listed[job] = (name, node)
    for wid, job in jobs.items():
        assert job is not None and "_" in job  # an array task's id, as squeue -r names it
        assert listed[job][0].startswith(PILOT_PREFIX) and listed[job][1] == "gpu1"
        env = json.loads(backend.read_logs(wid, 0, 0)[0].decode().splitlines()[-1])
        assert (env["CORRAL_WORKLOAD_ID"], env["CORRAL_NODE_ID"]) == (wid, "gpu1")
    for wid in ids:
        backend.release(wid, 0)


@pytest.mark.slurm
def test_a_worker_stopped_before_a_pilot_took_it_never_runs(
        slurm_cluster: SlurmCluster, tmp_path: Path, cleanup: None) -> None:
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=1,
                           pilot_idle_s=1.0)
    go = tmp_path / "go"
    busy = [make_spec(f"busy-{i}").on("gpu2").devices(i).command(
        sys.executable, "-c", WAIT_FOR_FILE, str(go)).build() for i in range(4)]
    assert backend.launch_many(busy) == [None] * 4
    busy_ids = [s.workload_id for s in busy]
    eventually(lambda: set(states_of(backend, busy_ids).values()) == {WorkerState.RUNNING},
               "the node to be full", timeout=60)
    # Slurm's answers about the pilots' jobs come in meanwhile: each worker is found by the id
    # its pilot wrote (read as vanished, it would be LOST)
    until = time.monotonic() + 3 * backend.status_interval_s + 1
    while time.monotonic() < until:
        assert set(states_of(backend, busy_ids).values()) == {WorkerState.RUNNING}
        time.sleep(0.2)
    late = make_spec("late").on("gpu2").devices(0).shell("echo ran").build()
    assert backend.launch_many([late]) == [None]
    assert states_of(backend, ["late"]) == {"late": WorkerState.STARTING}
    backend.stop("late", 0, 5.0, "preempted")
    [status] = [s for s in backend.poll(time.time()) if s.workload_id == "late"]
    assert (status.state, status.reason) == (WorkerState.STOPPED, base.STOPPED_BEFORE_START)
    go.touch()
    eventually(lambda: set(states_of(backend, busy_ids).values()) == {WorkerState.SUCCEEDED},
               "the busy workers to end", timeout=60)
    # the pilot meant for 'late' (and the spare) start now and find nothing to take
    record = backend.records.find("late", 0)
    eventually(lambda: not slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.strip(),
               "the spare pilots to idle out", timeout=60)
    assert not (record.dir / "worker-0" / JOB_ID_FILE).exists()
    assert backend.read_logs("late", 0, 0)[0] == b""
