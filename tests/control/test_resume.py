"""CORRAL_RESUME_FROM: the newest checkpoint in the checkpoint directory when an attempt is
launched, and nothing when there is none; CORRAL_CHECKPOINT_DIR stays the directory.

From the control plane's reading of a real directory, through the launch specs of the loop
(fake backend), to a real gang of examples/train_ckpt.py on the local backend that crashes,
restarts, resumes from the step both workers saved, and ends with the fault-free result.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from chaos.plane import Plane, events, fault_free, results, train_args
from corral.backends.local import LocalBackend, virtual_nodes
from corral.control import ControlSettings
from corral.control.act import launch_spec, resume_point
from corral.core.model import WorkerAssignment
from corral.store import Store

from .rig import Rig


def make(directory: Path, *entries: str) -> Path:
    """Create `entries` in `directory`; names ending in '/' are directories."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        if entry.endswith("/"):
            (directory / entry).mkdir()
        else:
            (directory / entry).write_text("x")
    return directory


@pytest.mark.parametrize(
    ("entries", "newest"),
    [
        pytest.param(None, None, id="no-directory"),
        pytest.param((), None, id="empty-directory"),
        pytest.param(("events-w0.jsonl", "result-w0.json", ".ckpt-00000010.npz.77.tmp"), None,
                     id="only-logs-results-and-a-half-written-checkpoint"),
        pytest.param(("ckpt-00000010.npz", "ckpt-00000020.npz", "events.jsonl"),
                     "ckpt-00000020.npz", id="newest-file"),
        pytest.param(("checkpoint-500/", "checkpoint-1000/", "runs/"), "checkpoint-1000",
                     id="newest-directory-by-number"),
    ],
)
def test_resume_point_reads_the_directory(tmp_path: Path, entries: tuple[str, ...] | None,
                                          newest: str | None) -> None:
    directory = tmp_path / "ckpt"
    if entries is not None:
        make(directory, *entries)
    expected = None if newest is None else str(directory / newest)
    assert resume_point(str(directory)) == expected


def test_resume_point_of_an_unreadable_path_is_none(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert resume_point(str(not_a_dir)) is None


def test_launch_spec_keeps_the_directory_and_names_the_checkpoint(tmp_path: Path,
                                                                  store: Store) -> None:
    rig = Rig(store)
    wid = rig.submit(checkpoint_dir=str(tmp_path / "named"))
    rec = rig.get(wid)
    spec = rig.loop.specs.spec(rec)
    where = (WorkerAssignment(0, "n0", (0,), 1000, 81920),)
    fresh = launch_spec(rec, spec, where, ControlSettings())
    assert (fresh.checkpoint_dir, fresh.resume_from) == (str(tmp_path / "named"), None)
    # A first attempt resumes too when its named directory already holds checkpoints.
    make(tmp_path / "named", "ckpt-3", "ckpt-12")
    again = launch_spec(rec, spec, where, ControlSettings())
    assert (again.attempt, again.resume_from) == (0, str(tmp_path / "named" / "ckpt-12"))


def test_a_restarted_gang_resumes_only_from_a_checkpoint_that_exists(tmp_path: Path,
                                                                     store: Store) -> None:
    rig = Rig(store)
    ckpt = tmp_path / "w"
    wid = rig.submit(workers=2, gpus=1, max_restarts=2, restart_backoff=0,
                     checkpoint_dir=str(ckpt), restart_on=[{"exit_code": [3]}])
    rig.step(2)
    assert [(s.attempt, s.resume_from) for s in rig.backend.launches] == [(0, None)]
    rig.backend.fail(wid, worker=0, exit_code=3)  # before any checkpoint was written
    rig.step(4)
    make(ckpt, "ckpt-00000010-w0.npz", "ckpt-00000010-w1.npz", "ckpt-00000020-w0.npz")
    rig.backend.fail(wid, worker=1, exit_code=3)
    rig.step(4)
    assert rig.state(wid) == "running"
    got = [(s.attempt, s.checkpoint_dir, s.resume_from) for s in rig.backend.launches]
    assert got == [(0, str(ckpt), None), (1, str(ckpt), None),
                   (2, str(ckpt), str(ckpt / "ckpt-00000020-w0.npz"))]


STEPS, EVERY, CRASH_AT = 30, 10, 25


def test_train_ckpt_gang_resumes_from_corrals_checkpoint_on_the_local_backend(
        tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "work", nodes=virtual_nodes(1, 2))
    plane = Plane.start(tmp_path, backend, grace_s=2.0)
    ckpt = tmp_path / "ckpt"
    command = [*train_args(STEPS, 0.01, EVERY), "--crash-at-step", str(CRASH_AT)]
    wid = plane.submit("resume", command, workers=2, gpus=1, max_restarts=1, restart_backoff=0,
                       checkpoint_dir=str(ckpt), restart_on=[{"exit_code": [3]}])
    try:
        plane.run_until(lambda: plane.record(wid).state in ("succeeded", "failed"),
                        "the job to end", timeout=60)
        rec = plane.record(wid)
    finally:
        plane.store.close()
    assert (rec.state, rec.attempt, rec.restart_count) == ("succeeded", 1, 1)
    told = [json.loads((tmp_path / "work" / wid / str(a) / "launch.json").read_text())["spec"]
            for a in (0, 1)]
    # What corral put in CORRAL_RESUME_FROM: nothing, then the newest checkpoint by name.
    assert [t["resume_from"] for t in told] == [None, str(ckpt / "ckpt-00000020-w1.npz")]
    assert {t["checkpoint_dir"] for t in told} == {str(ckpt)}
    starts = sorted((e["attempt"], e["event"], e.get("source", "")) for w in (0, 1)
                    for e in events(ckpt, w) if e["event"] in ("start", "resume"))
    # Each worker resumed from its own file of step 20, the last step both had saved before
    # they crashed at step 25.
    assert starts == [(0, "start", ""), (0, "start", ""),
                      (1, "resume", str(ckpt / "ckpt-00000020-w0.npz")),
                      (1, "resume", str(ckpt / "ckpt-00000020-w1.npz"))]
    assert results(ckpt, 2) == fault_free(tmp_path, 2, STEPS, EVERY)


def test_a_workers_crash_waits_until_every_worker_saved_the_step_before_it(
        tmp_path: Path) -> None:
    """`--crash-at-step` crashes once the gang has a common checkpoint before that step, so the
    gang test above resumes from step 20 however far apart its workers run: on a loaded machine
    worker 0 crashed at 25 before worker 1 had saved 20, and the gang resumed from 10."""
    def start(worker: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CORRAL_WORKER_INDEX": str(worker), "CORRAL_WORKERS": "2",
               "CORRAL_CHECKPOINT_DIR": str(tmp_path)}
        return subprocess.Popen([*train_args(STEPS, 0.001, EVERY), "--crash-at-step",
                                 str(CRASH_AT)], env=env, stdout=subprocess.DEVNULL)

    first = start(0)
    try:
        saved = tmp_path / "ckpt-00000020-w0.npz"
        for _ in range(3000):  # worker 0 alone reaches step 20 (its own file), then 25
            if saved.exists() or first.poll() is not None:
                break
            time.sleep(0.01)
        assert saved.exists(), "worker 0 never saved step 20"
        with pytest.raises(subprocess.TimeoutExpired):
            first.wait(timeout=1.0)  # at step 25 it waits for worker 1's step 20
        second = start(1)
        assert second.wait(timeout=60) == 3 and first.wait(timeout=60) == 3
    finally:
        first.kill()
    assert (tmp_path / "ckpt-00000020-w1.npz").exists()
