"""Warm slots (`corral.backends.slurm_pilot`): the pilot's and the item's scripts (pure, run by
/bin/sh), how many pilots to submit, and on a real Slurm: single workers queued ahead run in
pilot jobs on their planned node, each its own worker (its environment, its log, its job id),
and a worker stopped while no pilot has taken it never runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import WorkerState, base
from corral.backends.errors import BackendError, InvalidRequest
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
from corral.backends.slurm_pilot_owner import (
    CANCEL_BATCH,
    INSTALLATION_FILE,
    cancel_former_pilots,
    former_pilot,
    pilot_job_name,
)
from corral.testing.slurm import SlurmCluster

from .conftest import CHECKPOINT_ON_TERM, SHOW_ENV, eventually, make_spec

WAIT_FOR_FILE = ("import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n"
                 "    time.sleep(0.05)\n")


def run_pilot(pdir: Path, job: str, idle_s: float = 0.2, reuse_s: float = 0.0, gen: str = "",
              **array: str) -> subprocess.CompletedProcess[str]:
    script = pdir / "pilot.sbatch"
    script.write_text(pilot_script(pdir, idle_s, reuse_s, gen))
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


def key_dirs(tmp_path: Path) -> Path:
    pdir = tmp_path / "key"
    for d in ("queue", "claimed", "gone", "back"):
        (pdir / d).mkdir(parents=True)
    return pdir


def queue_items(tmp_path: Path, pdir: Path, worker: str, count: int,
                deadline: Path) -> list[Path]:
    """`count` items running `worker` (sh; WDIR: the worker's dir, where a runner writes its
    exit record), each with a worker dir of its own; their dirs."""
    wdirs = []
    for i in range(count):
        wdir = tmp_path / f"w{i}" / "worker-0"
        wdir.mkdir(parents=True)
        script = wdir.parent / "worker.sh"
        script.write_text(worker.replace("WDIR", str(wdir)))
        (pdir / "queue" / f"{i:03d}.sh").write_text(
            item_script(wdir, wdir.parent / "log", script, deadline))
        wdirs.append(wdir)
    return wdirs


def marks(pdir: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (pdir / folder).iterdir())


def test_a_reusing_pilot_runs_the_queued_workers_one_after_another(tmp_path: Path) -> None:
    """Reuse: each worker in turn under the pilot's one job id, a back/ mark after each (one
    more pilot looking for work), the gone mark once it idled out."""
    pdir = key_dirs(tmp_path)
    wdirs = queue_items(tmp_path, pdir, 'echo "ran as $SLURM_JOB_ID"\n: > WDIR/exit.json\n',
                        3, tmp_path / "no-stop" / "deadline")
    assert run_pilot(pdir, "41", reuse_s=60).returncode == 0
    for wdir in wdirs:
        assert (wdir.parent / "log").read_text() == "ran as 41\n"
        assert (wdir / JOB_ID_FILE).read_text() == "41\n"
    assert marks(pdir, "queue") == []
    assert marks(pdir, "back") == ["41.1", "41.2", "41.3"]
    assert marks(pdir, "gone") == ["41"]


def test_a_pilot_takes_nothing_after_a_worker_asked_to_stop(tmp_path: Path) -> None:
    """A stopped worker's job id may be scancel'ed past its deadline: the pilot that ran it
    must run no other worker by then, and it leaves no mark (it is not looking for work)."""
    pdir = key_dirs(tmp_path)
    deadline = tmp_path / "stopped" / "deadline"
    deadline.parent.mkdir()
    deadline.write_text("1.0\n")
    queue_items(tmp_path, pdir, "echo ran\n: > WDIR/exit.json\n", 2, deadline)
    assert run_pilot(pdir, "41", reuse_s=60).returncode == 0
    assert (tmp_path / "w0" / "log").read_text() == "ran\n"
    assert marks(pdir, "queue") == ["001.sh"]
    assert marks(pdir, "back") == [] and marks(pdir, "gone") == []


def test_a_pilot_takes_nothing_after_a_worker_whose_runner_wrote_no_exit_record(
        tmp_path: Path) -> None:
    """A runner killed (or that died) before its exit record: the pilot ends with it, so that
    Slurm's answer (the job ended) tells the backend, as for a lone job."""
    pdir = key_dirs(tmp_path)
    queue_items(tmp_path, pdir, "echo ran\n", 2, tmp_path / "no-stop" / "deadline")
    assert run_pilot(pdir, "41", reuse_s=60).returncode == 0
    assert marks(pdir, "queue") == ["001.sh"]
    assert marks(pdir, "back") == [] and marks(pdir, "gone") == []



def test_a_pilot_takes_nothing_after_a_worker_that_left_a_process_behind(
        tmp_path: Path) -> None:
    """A worker's process that escaped its process group (setsid) would live on beside the
    next worker on the GPU: the pilot takes nothing more and leaves no mark, as a lone job's
    end would; a worker that leaves nothing lets it go on (the test above)."""
    pdir = key_dirs(tmp_path)
    pidfile = tmp_path / "left.pid"
    worker = (f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' </dev/null >/dev/null 2>&1 &\n"
              f"while [ ! -s {pidfile} ]; do sleep 0.01; done\n: > WDIR/exit.json\n")
    queue_items(tmp_path, pdir, worker, 2, tmp_path / "no-stop" / "deadline")
    try:
        assert run_pilot(pdir, "41", reuse_s=60).returncode == 0
        assert marks(pdir, "queue") == ["001.sh"]
        assert marks(pdir, "back") == [] and marks(pdir, "gone") == []
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_without_reuse_a_pilot_runs_one_worker_and_leaves_no_mark(tmp_path: Path) -> None:
    pdir = key_dirs(tmp_path)
    queue_items(tmp_path, pdir, "echo ran\n: > WDIR/exit.json\n", 2,
                tmp_path / "no-stop" / "deadline")
    assert run_pilot(pdir, "41", reuse_s=0).returncode == 0
    assert marks(pdir, "queue") == ["001.sh"]
    assert marks(pdir, "back") == [] and marks(pdir, "gone") == []


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)

def test_a_pilot_passes_sigterm_to_its_worker_once_the_worker_is_asked_to_stop(
        tmp_path: Path) -> None:
    """A stop writes the worker's deadline file, then signals the pilot's job (scancel --batch
    --signal=TERM): the pilot passes it to the worker it runs. A SIGTERM with no deadline file
    for that worker (one meant for the worker before it, ended meanwhile) is not passed on.
    The worker's SIGINT is the default, not the ignore bash gives a background command."""
    pdir = key_dirs(tmp_path)
    ready, got = tmp_path / "ready", tmp_path / "got"
    worker = (f"trap 'echo TERM >> {got}; : > WDIR/exit.json; exit 0' TERM\n"
              f"{sys.executable} -c 'import signal; print(signal.getsignal(signal.SIGINT))' "
              f"> {ready}.tmp && mv {ready}.tmp {ready}\n"
              "while :; do sleep 0.05; done\n")
    deadline = tmp_path / "attempt" / "deadline"
    deadline.parent.mkdir()
    queue_items(tmp_path, pdir, worker, 2, deadline)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    script = pdir / "pilot.sbatch"
    script.write_text(pilot_script(pdir, 0.2, 60))
    # The pilot starts with SIGINT at its default, as slurmstepd starts a batch script: what is
    # checked is that the pilot adds no ignore. An ignore this test process inherited (an earlier
    # test in the same xdist worker may leave one) would pass to the worker (a fast-part -n 2
    # run saw '1' once; 7 reruns did not).
    pilot = subprocess.Popen(["/bin/bash", str(script)], env={**env, "SLURM_JOB_ID": "41"},
                             preexec_fn=_default_sigint)
    try:
        until = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < until:
            time.sleep(0.05)
        assert "default_int_handler" in ready.read_text()
        pilot.terminate()  # not this worker's stop: no deadline file
        time.sleep(0.5)
        assert not got.exists() and pilot.poll() is None
        deadline.write_text(f"{time.time() + 30}\n")
        pilot.terminate()
        assert pilot.wait(timeout=20) == 0
    finally:
        pilot.kill()
        pilot.wait()
    assert got.read_text() == "TERM\n"
    # asked to stop: the pilot left without taking the second worker, and without a mark
    assert marks(pdir, "queue") == ["001.sh"]
    assert marks(pdir, "back") == [] and marks(pdir, "gone") == []


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
        (k.dir / "gone" / f"{job}@{pilots.gen}").touch()
    (k.dir / "gone" / "6@0123456789ab").touch()  # a former backend's pilot: counts for nothing
    assert pilots.wanted(k) == 1
    assert list((k.dir / "gone").iterdir()) == []  # each mark counted once
    assert pilots.wanted(k) == 1
    k.submitted += 1
    (k.dir / "gone" / ".9.fifo").touch()  # a starting pilot's FIFO: not a mark
    assert pilots.wanted(k) == 0 and (k.dir / "gone" / ".9.fifo").exists()


def test_a_pilot_back_for_more_work_counts_as_one_submitted(tmp_path: Path) -> None:
    """Reuse: the worker placed on the GPU a reusing pilot's last worker freed needs no
    sbatch; one that had no pilot back (a stopped worker's pilot left) does."""
    pilots = Pilots(tmp_path, warm=1, idle_s=1.0, reuse_s=60.0)
    k = pilots.key_of("gpu1", "gpu:1")
    k.queued = k.submitted = 4  # 4 workers run in 4 pilots, the spare counted in below
    k.submitted += 1
    (k.dir / "back" / f"7_0.1@{pilots.gen}").touch()  # a worker ended, its pilot looks on
    k.queued += 1  # and the next worker is queued there
    assert pilots.wanted(k) == 0
    assert list((k.dir / "back").iterdir()) == []
    k.queued += 1  # another, with no pilot back for it: the spare takes it, one more wanted
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


@pytest.mark.parametrize("bad", [-1, 3601, float("nan"), True, "60"])
def test_a_pilot_reuse_that_is_not_a_time_in_range_is_refused_by_name(
        tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SlurmBackend(tmp_path / "work", warm_slots=1, pilot_reuse_s=bad)  # type: ignore[arg-type]
    assert refused.value.field == "pilot_reuse_s" and "0: one worker a pilot" in str(
        refused.value)


def test_item_names_sort_as_they_were_queued(tmp_path: Path) -> None:
    pilots = Pilots(tmp_path, warm=1, idle_s=1.0)
    names = [pilots.item_name() for _ in range(50)]
    assert sorted(names) == names and len(set(names)) == 50


def test_a_pilot_takes_only_its_backends_items_and_marks_its_own(tmp_path: Path) -> None:
    """After a restart the former backend's pilots (another `gen`) take none of the new one's
    items and leave marks the new one does not count: they idle out."""
    pdir = key_dirs(tmp_path)
    wdirs = queue_items(tmp_path, pdir, 'echo "ran as $SLURM_JOB_ID"\n: > WDIR/exit.json\n',
                        2, tmp_path / "no-stop" / "deadline")
    os.rename(pdir / "queue" / "000.sh", pdir / "queue" / "000@aaaa.sh")
    os.rename(pdir / "queue" / "001.sh", pdir / "queue" / "001@bbbb.sh")
    assert run_pilot(pdir, "41", reuse_s=60, gen="aaaa").returncode == 0
    assert (wdirs[0] / JOB_ID_FILE).read_text() == "41\n"  # its own backend's item
    assert not (wdirs[1] / JOB_ID_FILE).exists()  # not the other's
    assert marks(pdir, "queue") == ["001@bbbb.sh"]
    assert marks(pdir, "back") == ["41.1@aaaa"] and marks(pdir, "gone") == ["41@aaaa"]


def test_a_restarted_backend_adopts_the_items_no_pilot_took(tmp_path: Path) -> None:
    """`Pilots.adopt`: a waiting item becomes the new backend's (its gen, same place in the
    queue) and counts as queued, so pilots are asked for it; a taken or ended one does not;
    a stop still finds the renamed item to withdraw it."""
    from corral.backends.records import AttemptRecords
    from corral.backends.slurm_pilot import find_item

    before = Pilots(tmp_path, warm=1, idle_s=1.0)
    k = before.key_of("gpu1", "gpu:1")
    records = AttemptRecords(tmp_path / "records")
    made = []
    for i in range(3):
        item = before.item_name()
        made.append(records.create(make_spec(f"adopt-{i}").on("gpu1").build(),
                                   {"jobs": {}, "notes": {}, PILOT_KEY: {
                                       "key": k.dir.name, "item": item}}))
        (made[-1].dir / "worker-0").mkdir()
        (k.dir / "queue" / item).write_text("exit 0\n")
    (made[1].dir / "worker-0" / JOB_ID_FILE).write_text("9_0\n")  # a pilot took this one
    os.rename(k.dir / "queue" / made[1].engine[PILOT_KEY]["item"],
              k.dir / "claimed" / "9_0.0.sh")
    items = [m.engine[PILOT_KEY]["item"] for m in made]  # as the records name them
    after = Pilots(tmp_path, warm=1, idle_s=1.0)
    [adopted] = after.adopt(made)
    assert adopted.dir == k.dir and adopted.queued == 2
    assert after.wanted(adopted) == 3  # the two items and the spare
    names = marks(k.dir, "queue")
    assert len(names) == 2 and all(n.endswith(f"@{after.gen}.sh") for n in names)
    assert [find_item(k.dir / "queue", items[i]) for i in (0, 2)] == [
        k.dir / "queue" / n for n in names]  # found by their old names, oldest first still
    assert after.adopt(made) == []  # adopted once


def test_the_installation_id_is_made_once_per_work_dir_and_kept(tmp_path: Path) -> None:
    """Stable across restarts (the same work dir), another for another installation; a file
    that holds no id is refused, naming the file and the fix."""
    first = Pilots(tmp_path / "a", warm=1, idle_s=1.0)
    again = Pilots(tmp_path / "a", warm=1, idle_s=1.0)
    other = Pilots(tmp_path / "b", warm=1, idle_s=1.0)
    assert first.installation == again.installation != other.installation
    assert first.gen != again.gen  # a generation per backend instance
    (tmp_path / "b" / INSTALLATION_FILE).write_text("not an id\n")
    with pytest.raises(BackendError, match=r"installation-id.*delete it"):
        Pilots(tmp_path / "b", warm=1, idle_s=1.0)


def test_a_former_pilot_is_this_installations_from_another_generation() -> None:
    name = pilot_job_name("0123456789ab", "aaaaaaaaaaaa", "gpu1.gpu_1")
    assert former_pilot(name, "0123456789ab", "bbbbbbbbbbbb")
    assert not former_pilot(name, "0123456789ab", "aaaaaaaaaaaa")  # this backend's own
    assert not former_pilot(name, "ba9876543210", "bbbbbbbbbbbb")  # another installation's
    assert not former_pilot(f"{PILOT_PREFIX}gpu1.gpu_1", "0123456789ab", "bbbbbbbbbbbb")
    assert not former_pilot("corral-array.0123456789ab", "0123456789ab", "bbbbbbbbbbbb")


class ListedSlurm:
    """`cancel_former_pilots`'s Slurm: squeue answers `listed`; the commands are kept."""

    def __init__(self, pilots: Pilots, listed: list[str]) -> None:
        self.pilots, self.listed, self.asked = pilots, listed, []

    def _slurm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.asked.append(list(args))
        out = "".join(f"{line}\n" for line in self.listed) if args[0] == "squeue" else ""
        return subprocess.CompletedProcess(args, 0, out, "")


def test_only_the_former_generations_pending_pilots_are_cancelled(tmp_path: Path) -> None:
    pilots = Pilots(tmp_path, warm=1, idle_s=1.0)
    mine, gen = pilots.installation, pilots.gen
    before = pilot_job_name(mine, "aaaaaaaaaaaa", "gpu1.gpu_1")
    slurm = ListedSlurm(pilots, [
        f"7_2|{before}", f"7_3|{before}",  # pending tasks of a former array (7_0, 7_1 run)
        f"8_0|{pilot_job_name(mine, gen, 'gpu1.gpu_1')}",  # this backend's own
        f"9_0|{pilot_job_name('ba9876543210', 'aaaaaaaaaaaa', 'gpu1.gpu_1')}",  # another's
        f"10|{PILOT_PREFIX}gpu1.gpu_1", "11|train"])
    assert cancel_former_pilots(slurm) == ["7_2", "7_3"]  # type: ignore[arg-type]
    [squeue, scancel] = slurm.asked
    assert squeue[:5] == ["squeue", "-h", "-r", "-t", "PENDING"]
    assert scancel == ["scancel", "--state=PENDING", "7_2", "7_3"]
    slurm.listed = [f"{i}_0|{before}" for i in range(CANCEL_BATCH + 1)]
    slurm.asked.clear()
    assert len(cancel_former_pilots(slurm)) == CANCEL_BATCH + 1  # type: ignore[arg-type]
    assert [len(c) - 2 for c in slurm.asked[1:]] == [CANCEL_BATCH, 1]


def test_a_first_start_asks_slurm_nothing_a_restart_asks_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, ...]] = []

    def slurm(self: SlurmBackend, *args: str, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
        asked.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(SlurmBackend, "_slurm", slurm)
    first = SlurmBackend(tmp_path / "work", ask_in_background=False)
    assert asked == []
    first.pilots.key_of("gpu1", "gpu:1")  # what a launch onto pilots makes
    SlurmBackend(tmp_path / "work", ask_in_background=False)
    assert [a[:5] for a in asked] == [("squeue", "-h", "-r", "-t", "PENDING")]


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
                           pilot_idle_s=1.0, pilot_reuse_s=0)  # one worker a pilot
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


def wave(backend: SlurmBackend, node: str, ids: list[str], code: str = SHOW_ENV,
         gate: Path | None = None) -> dict[str, str]:
    """One single-GPU worker per id on `node`, launched together and run to success: the job id
    each ran under. With a gate, each worker waits for that file, made once all run: no pilot
    ends its worker early and takes a second of the wave (a reusing pilot may, and under load a
    quick worker's pilot did, before the last pilot had started)."""
    if gate is not None:
        code = (f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n"
                f"    time.sleep(0.05)\n{code}")
    specs = [make_spec(wid).on(node).devices(i).python(code).build() for i, wid in enumerate(ids)]
    assert backend.launch_many(specs) == [None] * len(ids)
    if gate is not None:
        eventually(lambda: set(states_of(backend, ids).values()) == {WorkerState.RUNNING},
                   "every worker of the wave to run", timeout=90)
        gate.touch()
    eventually(lambda: set(states_of(backend, ids).values()) == {WorkerState.SUCCEEDED},
               "every worker to succeed", timeout=90)
    jobs = {wid: taken_by(backend.records.find(wid, 0), 0) for wid in ids}
    for wid in ids:
        backend.release(wid, 0)
    return {wid: job for wid, job in jobs.items() if job is not None}


def back_marks(backend: SlurmBackend, node: str) -> int:
    return len(list((backend.pilots.root / f"{node}.gpu_1" / "back").iterdir()))


@pytest.mark.slurm
def test_a_pilot_runs_the_next_worker_on_its_gpu_without_a_new_slurm_job(
        slurm_cluster: SlurmCluster, tmp_path: Path, cleanup: None) -> None:
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=1,
                           pilot_idle_s=10.0, pilot_reuse_s=60.0)
    first = wave(backend, "gpu1", [f"one-{i}" for i in range(4)], gate=tmp_path / "one")
    assert len(set(first.values())) == 4
    eventually(lambda: back_marks(backend, "gpu1") == 4, "the 4 pilots to look for more work")
    k = backend.pilots.known("gpu1.gpu_1")
    assert k is not None and k.submitted == 5  # 4 and the spare
    second = wave(backend, "gpu1", [f"two-{i}" for i in range(4)], gate=tmp_path / "two")
    assert set(second.values()) == set(first.values())  # the same 4 pilots ran them
    assert k.submitted == 5  # and no sbatch was needed
    for wid in [*first, *second]:  # each its own worker: environment and log
        env = json.loads((backend.records.find(wid, 0).log_path(0)).read_text().splitlines()[-1])
        assert (env["CORRAL_WORKLOAD_ID"], env["CORRAL_NODE_ID"]) == (wid, "gpu1")


@pytest.mark.slurm
def test_a_worker_in_a_reused_pilot_is_stopped_by_the_contract_and_its_pilot_leaves(
        slurm_cluster: SlurmCluster, tmp_path: Path, cleanup: None) -> None:
    backend = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=1,
                           pilot_idle_s=10.0, pilot_reuse_s=60.0)
    # the node's 4 GPUs in 4 pilots (the spare pending): whichever takes the next is reused
    pilots = set(wave(backend, "gpu2", [f"before-{i}" for i in range(4)], "print(1)",
                      gate=tmp_path / "before").values())
    eventually(lambda: back_marks(backend, "gpu2") == 4, "the pilots to look for more work")
    spec = make_spec("polite").on("gpu2").devices(0).python(CHECKPOINT_ON_TERM).build()
    assert backend.launch_many([spec]) == [None]
    eventually(lambda: states_of(backend, ["polite"]) == {"polite": WorkerState.RUNNING},
               "the worker to run", timeout=60)
    record = backend.records.find("polite", 0)
    pilot = taken_by(record, 0)
    assert pilot in pilots  # a pilot that ran a worker before took it
    eventually(lambda: "running" in backend.read_logs("polite", 0, 0)[0].decode(),
               "the worker to print")
    backend.stop("polite", 0, 30.0, "preempted")
    [end] = eventually(lambda: [s for s in backend.poll(time.time())
                                if s.workload_id == "polite" and s.state.ended] or None,
                       "the worker to end", timeout=60)
    assert (end.state, end.reason, end.exit_code) == (WorkerState.STOPPED, base.STOPPED_IN_TIME, 0)
    assert "SIGTERM; deadline file seen: True" in backend.read_logs("polite", 0, 0)[0].decode()
    # its pilot takes no other worker: it leaves Slurm at once, with no mark
    eventually(lambda: pilot not in slurm_cluster.run("squeue", "-h", "-r", "-o", "%i"
                                                      ).stdout.split(), "the pilot to leave")
    k = backend.pilots.known("gpu2.gpu_1")
    assert k is not None and k.back == 4 and back_marks(backend, "gpu2") == 0


@pytest.mark.slurm
def test_a_restarted_backend_runs_the_workers_its_predecessor_queued_once(
        slurm_cluster: SlurmCluster, tmp_path: Path, cleanup: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Items queued whose pilots were never submitted (slurmctld away, then the control plane
    restarted): the new backend adopts them and asks pilots for them itself, with no launch on
    that node to prompt it; each worker runs once."""
    from corral.backends import slurm_pilot
    from corral.backends.errors import BackendUnavailable

    work = tmp_path / "work"
    before = SlurmBackend(work, env=slurm_cluster.env, warm_slots=1, pilot_idle_s=1.0)

    def away(*_: object) -> None:
        raise BackendUnavailable("slurmctld is not answering (the test's)")
    monkeypatch.setattr(slurm_pilot, "_submit_pilots", away)
    ids = [f"adopted-{i}" for i in range(2)]
    specs = [make_spec(wid).on("gpu3").devices(i).python(SHOW_ENV).build()
             for i, wid in enumerate(ids)]
    assert before.launch_many(specs) == [None] * 2  # handed over: the items wait for pilots
    assert states_of(before, ids) == {wid: WorkerState.STARTING for wid in ids}
    monkeypatch.undo()
    after = SlurmBackend(work, env=slurm_cluster.env, warm_slots=1, pilot_idle_s=1.0)
    eventually(lambda: set(states_of(after, ids).values()) == {WorkerState.SUCCEEDED},
               "the adopted workers to succeed", timeout=90)
    assert after.launch_many(specs) == [None] * 2  # the same attempts again: nothing queued
    for wid in ids:  # each ran once, as itself
        lines = after.read_logs(wid, 0, 0)[0].decode().splitlines()
        runs = [json.loads(line) for line in lines if line.startswith("{")]
        assert [env["CORRAL_WORKLOAD_ID"] for env in runs] == [wid]
        after.release(wid, 0)


def pilot_jobs(cluster: SlurmCluster, state: str, prefix: str) -> set[str]:
    """The ids of the pilot array tasks in `state` whose job name starts with `prefix`."""
    out = cluster.run("squeue", "-h", "-r", "-t", state, "-o", "%i|%j").stdout
    return {job for job, _, name in (line.partition("|") for line in out.splitlines())
            if name.startswith(prefix)}


def named(backend: SlurmBackend) -> str:
    """The job names of the pilots `backend` submits start with this."""
    return pilot_job_name(backend.pilots.installation, backend.pilots.gen, "")


@pytest.mark.slurm
def test_a_restart_cancels_the_former_pending_pilots_and_no_other_installations(
        slurm_cluster: SlurmCluster, tmp_path: Path, cleanup: None) -> None:
    """gpu3 full with 4 workers in pilots, a 5th queued: the former backend's 3 pilots wait in
    Slurm (the 5th's and 2 spares), and 3 of another installation's on the same node. The
    restarted backend cancels its predecessor's 3 and no other job: the 4 running pilots run
    on (their workers end as they would), the other installation's still wait and later run its
    worker. The 5th runs in a pilot of the new backend (a former pilot whose worker ended takes
    none of the new backend's items), and every worker runs once."""
    gate = tmp_path / "gate"
    code = (f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n"
            f"    time.sleep(0.05)\n{SHOW_ENV}")
    before = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=2,
                          pilot_idle_s=2.0, pilot_reuse_s=60.0)
    ids = [f"gen-{i}" for i in range(5)]
    assert before.launch_many([make_spec(wid).on("gpu3").devices(i % 4).python(code).build()
                               for i, wid in enumerate(ids)]) == [None] * 5
    eventually(lambda: sorted(states_of(before, ids).values()) == sorted(
        [WorkerState.RUNNING] * 4 + [WorkerState.STARTING]), "4 workers to run", timeout=120)
    running = {taken_by(before.records.find(wid, 0), 0) for wid in ids} - {None}
    assert len(running) == 4
    other = SlurmBackend(tmp_path / "other", env=slurm_cluster.env, warm_slots=2,
                         pilot_idle_s=1.0)
    assert other.pilots.installation != before.pilots.installation
    assert other.launch_many([make_spec("theirs").on("gpu3").devices(0).python(SHOW_ENV)
                              .build()]) == [None]
    eventually(lambda: len(pilot_jobs(slurm_cluster, "PENDING", named(before))) == 3,
               "the former pilots to wait")
    theirs = pilot_jobs(slurm_cluster, "PENDING", named(other))
    assert len(theirs) == 3  # the node is full: they wait until the gate opens

    after = SlurmBackend(tmp_path / "work", env=slurm_cluster.env, warm_slots=2,
                         pilot_idle_s=2.0, pilot_reuse_s=60.0)
    assert after.pilots.installation == before.pilots.installation
    eventually(lambda: not pilot_jobs(slurm_cluster, "PENDING", named(before)),
               "the former pending pilots to be cancelled", timeout=60)
    mine = eventually(lambda: pilot_jobs(slurm_cluster, "PENDING", named(after)),
                      "the new backend's pilots for the adopted worker", timeout=60)
    assert pilot_jobs(slurm_cluster, "PENDING", named(other)) == theirs  # untouched
    # run on, and none of the 3 cancelled started instead (no GPU was free for one)
    assert pilot_jobs(slurm_cluster, "RUNNING", named(before)) == running

    gate.touch()
    eventually(lambda: set(states_of(after, ids).values()) == {WorkerState.SUCCEEDED},
               "every worker to succeed", timeout=120)
    eventually(lambda: states_of(other, ["theirs"]) == {"theirs": WorkerState.SUCCEEDED},
               "the other installation's worker to succeed", timeout=120)
    jobs = {wid: taken_by(after.records.find(wid, 0), 0) for wid in ids}
    [adopted] = [job for job in jobs.values() if job not in running]
    assert adopted is not None and adopted.split("_")[0] in {j.split("_")[0] for j in mine}
    for wid in ids:  # each ran once, as itself
        lines = after.read_logs(wid, 0, 0)[0].decode().splitlines()
        assert [json.loads(line)["CORRAL_WORKLOAD_ID"] for line in lines
                if line.startswith("{")] == [wid]
        after.release(wid, 0)
