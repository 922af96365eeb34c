"""Local workers cannot read what corral keeps (issue 15, item 2), for real.

As root (as these tests run here), the local backend runs each worker as its queue's OS user
(`corral-q-<queue>`, created on demand): a job that tries to read the admin token, the database,
another job's log or launch record (its env secrets) gets "Permission denied", while it still
writes its own log (handed to it as a descriptor), reads its deadline file and writes its
checkpoint dir. Workers are shell lines: this interpreter may live where another user cannot
reach (/root).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import LocalBackend, WorkerState
from corral.backends.local import virtual_nodes
from corral.backends.worker_users import PER_QUEUE, WorkerUsers, queue_user_name

from .conftest import eventually, make_spec

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="worker users need root and useradd")

PROBE = """
for f in "$DATA/admin-token" "$DATA/corral.db" "$OTHER_LOG" "$OTHER_LAUNCH"; do
  if cat "$f" >/dev/null 2>&1; then echo "READ $f"; else echo "DENIED $f"; fi
done
ls "$DATA" >/dev/null 2>&1 && echo "LISTED data" || echo "DENIED listing"
echo "user=$(id -un)"
echo saved > "$CORRAL_CHECKPOINT_DIR/step-1" && echo "checkpoint written"
test -e "$CORRAL_PREEMPT_DEADLINE_FILE" || test -x "$(dirname "$CORRAL_PREEMPT_DEADLINE_FILE")" \
  && echo "deadline dir reachable"
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # not under pytest's tmp_path: its base is 0700 (root's), which no worker user can cross
    root = Path(tempfile.mkdtemp(prefix="corral-iso-"))
    os.chmod(root, 0o711)
    (root / "admin-token").write_text("TOKEN-SECRET\n")
    (root / "corral.db").write_text("DB-SECRET")
    for f in ("admin-token", "corral.db"):
        os.chmod(root / f, 0o600)
    (root / "checkpoints").mkdir(mode=0o711)
    os.chmod(root / "checkpoints", 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _ended(local: LocalBackend, wid: str) -> bool:
    return all(s.state.ended for s in local.poll(0.0) if s.workload_id == wid) and any(
        s.workload_id == wid for s in local.poll(0.0))


def test_a_worker_of_another_queue_reads_nothing_of_corral_or_other_jobs(data_dir: Path) -> None:
    local = LocalBackend(data_dir / "work", nodes=virtual_nodes(2, 4),
                         worker_users=WorkerUsers(PER_QUEUE))
    secret = make_spec("secret-job").shell("echo LOG-SECRET").with_(
        queue="team-a", env={"API_KEY": "ENV-SECRET"},
        checkpoint_dir=str(data_dir / "checkpoints" / "secret-job")).build()
    local.launch(secret)
    eventually(lambda: _ended(local, "secret-job"), "the first job to end")
    other_log = local.log_path("secret-job", 0)
    other_launch = data_dir / "work" / "secret-job" / "0" / "launch.json"
    probe = make_spec("probe").shell(PROBE).with_(
        queue="team-b", env={"DATA": str(data_dir), "OTHER_LOG": str(other_log),
                             "OTHER_LAUNCH": str(other_launch)},
        checkpoint_dir=str(data_dir / "checkpoints" / "probe")).build()
    local.launch(probe)
    eventually(lambda: _ended(local, "probe"), "the probe to end")
    status = next(s for s in local.poll(0.0) if s.workload_id == "probe")
    assert status.state == WorkerState.SUCCEEDED
    log = local.read_logs("probe", 0)[0].decode()
    assert "READ" not in log, log
    for what in ("admin-token", "corral.db", str(other_log), str(other_launch), "listing"):
        assert any(line.startswith("DENIED") and line.endswith(what)
                   for line in log.splitlines()), (what, log)
    assert f"user={queue_user_name('team-b')}" in log
    assert "checkpoint written" in log and "deadline dir reachable" in log
    assert "LOG-SECRET" in local.read_logs("secret-job", 0)[0].decode()  # its own log works
    for private in (other_log, other_launch):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_checkpoint_dirs_corral_did_not_create_are_never_handed_over(data_dir: Path) -> None:
    existing = data_dir / "shared"
    existing.mkdir(mode=0o755)
    local = LocalBackend(data_dir / "work", nodes=virtual_nodes(2, 4),
                         worker_users=WorkerUsers(PER_QUEUE))
    local.launch(make_spec("w").shell("true").with_(queue="team-a",
                                                    checkpoint_dir=str(existing)).build())
    eventually(lambda: _ended(local, "w"), "the job to end")
    assert existing.stat().st_uid == 0  # a spec naming /etc must not get /etc chowned


def test_per_queue_user_names_fit_and_differ() -> None:
    assert queue_user_name("research") == "corral-q-research"
    long_a, long_b = "research.nlp.very-long-team-name-a", "research.nlp.very-long-team-name-b"
    assert len(queue_user_name(long_a)) <= 32
    assert queue_user_name(long_a) != queue_user_name(long_b)
