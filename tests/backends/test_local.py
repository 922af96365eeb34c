"""The local backend, for real: child processes, signals, files, and a control-plane restart.

Children are tiny Python programs that report what they saw by writing files under OUT. The
tests wait for behaviour (a file appears, a status ends), never for an amount of time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends import (
    AttemptStillRunning,
    InvalidLaunchSpec,
    LaunchConflict,
    LaunchError,
    LocalBackend,
    UnknownAttempt,
    WorkerState,
    WorkerStatus,
    base,
    local_runner,
)
from corral.backends.local import virtual_nodes

from .conftest import eventually, make_spec

WAIT_FOR_GO = """
import os, pathlib, sys, time
out = pathlib.Path(os.environ["OUT"])
(out / f"ready-{os.environ['CORRAL_WORKER_INDEX']}").write_text(str(os.getpid()))
while not (out / "go").exists():
    time.sleep(0.02)
sys.exit(int(os.environ.get("EXIT", "0")))
"""

CHECKPOINT_ON_SIGTERM = """
import os, pathlib, signal, sys, time
out = pathlib.Path(os.environ["OUT"])
def on_term(signum, frame):
    deadline = float(pathlib.Path(os.environ["CORRAL_PREEMPT_DEADLINE_FILE"]).read_text())
    ckpt = pathlib.Path(os.environ["CORRAL_CHECKPOINT_DIR"]) / "step-7"
    ckpt.write_text(f"{deadline} {time.time()}")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
(out / f"ready-{os.environ['CORRAL_WORKER_INDEX']}").write_text(str(os.getpid()))
while True:
    signal.pause()
"""

IGNORE_SIGTERM = """
import os, pathlib, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
out = pathlib.Path(os.environ["OUT"])
(out / f"ready-{os.environ['CORRAL_WORKER_INDEX']}").write_text(str(os.getpid()))
while True:
    signal.pause()
"""


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "work"
    yield path
    _kill_everything_started_under(path)


@pytest.fixture
def local(work: Path) -> LocalBackend:
    return LocalBackend(work, nodes=virtual_nodes(2, 4))


def _kill_everything_started_under(work: Path) -> None:
    """Teardown: kill, by recorded pid, every runner and worker these tests started."""
    for record in [*work.glob("*/*/worker-*/child.json"), *work.glob("*/*/worker-*/spawn.json")]:
        identity = local_runner.read_identity(record)
        if identity is not None and local_runner.is_alive(identity):
            local_runner.kill_group(identity.pid, signal.SIGKILL)


def statuses_of(backend: LocalBackend, workload: str, attempt: int = 0) -> list[WorkerStatus]:
    return [s for s in backend.poll(1000.0) if (s.workload_id, s.attempt) == (workload, attempt)]


def wait_ended(backend: LocalBackend, workload: str, attempt: int = 0) -> list[WorkerStatus]:
    def ended() -> list[WorkerStatus] | None:
        got = statuses_of(backend, workload, attempt)
        return got if got and all(s.state.ended for s in got) else None
    return eventually(ended, f"{workload} to end")


def wait_file(path: Path) -> str:
    return eventually(lambda: path.read_text() if path.exists() else None,
                      f"{path.name} to appear")


def runner_pid(work: Path, workload: str, worker: int = 0, attempt: int = 0) -> int:
    record = work / workload / str(attempt) / f"worker-{worker}" / "runner.json"
    identity = eventually(lambda: local_runner.read_identity(record), "the runner's record")
    return identity.pid


# --- the environment contract ---------------------------------------------------------------

DUMP_ENV = """
import json, os, pathlib
seen = {k: v for k, v in os.environ.items()
        if k.startswith(("CORRAL_", "CUDA_")) or k in ("WANDB_PROJECT", "PARENT_ONLY")}
seen["cwd"] = os.getcwd()
out = pathlib.Path(os.environ["OUT"]) / f"env-{os.environ['CORRAL_WORKER_INDEX']}.json"
out.write_text(json.dumps(seen))
"""


def test_each_worker_sees_the_environment_contract(
    local: LocalBackend, out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", "postgresql://secret")  # the control plane's own
    monkeypatch.setenv("PARENT_ONLY", "inherited")
    ckpt = tmp_path / "ckpt"
    spec = (make_spec("train").workers(2).attempt(2).devices(1, 3).share(500, 40000)
            .python(DUMP_ENV)
            .with_(env={"OUT": str(out), "WANDB_PROJECT": "p"}, working_dir=str(tmp_path),
                   checkpoint_dir=str(ckpt), resume_from=str(ckpt / "step-5"), restart_count=1)
            .build())
    local.launch(spec)
    assert [s.state for s in wait_ended(local, "train", 2)] == [WorkerState.SUCCEEDED] * 2
    seen = [json.loads((out / f"env-{i}.json").read_text()) for i in (0, 1)]
    deadline_file = str(local.work_dir / "train" / "2" / "preempt-deadline")
    for i, env in enumerate(seen):
        assert env == {
            "CUDA_VISIBLE_DEVICES": "1,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CORRAL_WORKLOAD_ID": "train", "CORRAL_QUEUE": "research",
            "CORRAL_WORKER_INDEX": str(i), "CORRAL_WORKERS": "2",
            "CORRAL_NODE_ID": f"local-{i}", "CORRAL_ATTEMPT": "2", "CORRAL_RESTART_COUNT": "1",
            "CORRAL_GPU_MILLI": "500", "CORRAL_GPU_MEMORY_MIB": "40000",
            "CORRAL_CHECKPOINT_DIR": str(ckpt), "CORRAL_RESUME_FROM": str(ckpt / "step-5"),
            "CORRAL_PREEMPT_DEADLINE_FILE": deadline_file, "CORRAL_MASTER_ADDR": "127.0.0.1",
            "CORRAL_MASTER_PORT": seen[0]["CORRAL_MASTER_PORT"], "WANDB_PROJECT": "p",
            "PARENT_ONLY": "inherited", "cwd": str(tmp_path),
            "CORRAL_PROGRESS_FILE": str(local.work_dir / "train" / "2" / f"progress-{i}"
                                        / "progress.json"),
        }
    assert int(seen[0]["CORRAL_MASTER_PORT"]) > 0
    assert ckpt.is_dir()  # created for the worker


def test_without_inherit_env_workers_get_only_the_basics(work: Path, out: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARENT_ONLY", "inherited")
    backend = LocalBackend(work, nodes=virtual_nodes(), inherit_env=False)
    backend.launch(make_spec("a").python(DUMP_ENV).with_(env={"OUT": str(out)}).build())
    wait_ended(backend, "a")
    assert "PARENT_ONLY" not in json.loads((out / "env-0.json").read_text())


def test_python_in_a_command_is_the_interpreter_corral_runs_in(
        work: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare PATH (a fresh machine, no activated venv) must not decide which `python` runs."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    backend = LocalBackend(work, nodes=virtual_nodes())
    code = "import pathlib, sys, os; pathlib.Path(os.environ['OUT'], 'py').write_text(sys.executable)"
    backend.launch(make_spec("a").command("python", "-c", code).with_(env={"OUT": str(out)}).build())
    [got] = wait_ended(backend, "a")
    assert got.state == WorkerState.SUCCEEDED, got
    assert Path((out / "py").read_text()).parent == Path(sys.executable).parent


# --- exit codes, logs, shell ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("code", "state"),
    [pytest.param(0, WorkerState.SUCCEEDED, id="exit-0"),
     pytest.param(3, WorkerState.FAILED, id="exit-3")],
)
def test_exit_codes_are_reported(local: LocalBackend, code: int, state: WorkerState) -> None:
    local.launch(make_spec("a").python(f"import sys; sys.exit({code})").build())
    [got] = wait_ended(local, "a")
    assert (got.state, got.reason, got.exit_code) == (state, base.EXITED, code)
    assert got.finished_at is not None and got.finished_at <= got.observed_at


def test_logs_are_captured_and_read_incrementally(local: LocalBackend, out: Path) -> None:
    code = ("import os, pathlib, sys, time\nprint('one', flush=True)\n"
            "print('to stderr', file=sys.stderr, flush=True)\n"
            "go = pathlib.Path(os.environ['OUT']) / 'go'\n"
            "while not go.exists(): time.sleep(0.02)\nprint('two')")
    local.launch(make_spec("a").python(code).with_(env={"OUT": str(out)}).build())
    def two_lines() -> tuple[bytes, int] | None:
        chunk, offset = local.read_logs("a", 0)
        return (chunk, offset) if chunk.count(b"\n") >= 2 else None

    first = eventually(two_lines, "the first lines")
    assert first[0] == b"one\nto stderr\n"
    (out / "go").touch()
    wait_ended(local, "a")
    assert local.read_logs("a", 0, first[1]) == (b"two\n", first[1] + 4)
    assert local.read_logs("a", 0, first[1] + 4) == (b"", first[1] + 4)
    assert local.log_path("a", 0) == local.work_dir / "a" / "0" / "worker-0.log"


def test_logs_of_unknown_work_are_an_error(local: LocalBackend) -> None:
    with pytest.raises(UnknownAttempt):
        local.read_logs("nobody", 0)
    local.launch(make_spec("a").build())
    with pytest.raises(UnknownAttempt):
        local.read_logs("a", 5)
    with pytest.raises(UnknownAttempt):
        local.read_logs("a", 0, attempt=9)


def test_a_shell_only_when_asked(local: LocalBackend) -> None:
    local.launch(make_spec("sh").shell("echo worker=$CORRAL_WORKER_INDEX; exit 4").build())
    local.launch(make_spec("argv").command("echo", "$CORRAL_WORKER_INDEX", "a;b").build())
    [shelled] = wait_ended(local, "sh")
    [plain] = wait_ended(local, "argv")
    assert (shelled.state, shelled.exit_code) == (WorkerState.FAILED, 4)
    assert local.read_logs("sh", 0)[0] == b"worker=0\n"
    assert plain.state == WorkerState.SUCCEEDED
    assert local.read_logs("argv", 0)[0] == b"$CORRAL_WORKER_INDEX a;b\n"


# --- the preemption contract ------------------------------------------------------------------

def test_stop_lets_the_worker_checkpoint_before_its_deadline(
    local: LocalBackend, out: Path, tmp_path: Path,
) -> None:
    ckpt = tmp_path / "ckpt"
    local.launch(make_spec("a").workers(2).python(CHECKPOINT_ON_SIGTERM)
                 .with_(env={"OUT": str(out)}, checkpoint_dir=str(ckpt)).build())
    wait_file(out / "ready-0")
    wait_file(out / "ready-1")
    local.stop("a", 0, 60.0, "preempted by b")
    got = wait_ended(local, "a")
    assert [(s.state, s.reason, s.exit_code, s.message) for s in got] == [
        (WorkerState.STOPPED, base.STOPPED_IN_TIME, 0, "preempted by b")] * 2
    deadline_seen, written_at = map(float, (ckpt / "step-7").read_text().split())
    deadline_file = local.work_dir / "a" / "0" / "preempt-deadline"
    assert deadline_seen == float(deadline_file.read_text())
    assert written_at < deadline_seen  # the checkpoint landed before the deadline


def test_a_worker_ignoring_sigterm_is_killed_at_its_deadline(local: LocalBackend,
                                                             out: Path) -> None:
    local.launch(make_spec("a").python(IGNORE_SIGTERM).with_(env={"OUT": str(out)}).build())
    wait_file(out / "ready-0")
    local.stop("a", 0, 0.5, "preempted")
    [got] = wait_ended(local, "a")
    assert (got.state, got.reason, got.exit_code) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, -signal.SIGKILL)
    assert b"[corral] still running at the deadline: SIGKILL sent" in local.read_logs("a", 0)[0]


def test_stop_kills_the_whole_process_tree(local: LocalBackend, out: Path) -> None:
    code = ("import os, pathlib, signal, subprocess, sys\n"
            "grandchild = subprocess.Popen([sys.executable, '-c', "
            "'import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.pause()'])\n"
            "out = pathlib.Path(os.environ['OUT'])\n"
            "(out / 'grandchild').write_text(str(grandchild.pid))\n"
            "(out / 'ready-0').write_text('x')\nsignal.pause()")
    local.launch(make_spec("a").python(code).with_(env={"OUT": str(out)}).build())
    grandchild = int(wait_file(out / "grandchild"))
    wait_file(out / "ready-0")
    local.stop("a", 0, 60.0, "preempted")
    [got] = wait_ended(local, "a")
    assert got.state == WorkerState.STOPPED
    eventually(lambda: local_runner.identify(grandchild) is None, "the grandchild to be gone")


def test_stop_is_idempotent_and_a_no_op_for_unknown_or_ended_work(
    local: LocalBackend, out: Path,
) -> None:
    local.stop("nobody", 0, 1.0, "x")
    local.launch(make_spec("done").build())
    wait_ended(local, "done")
    local.stop("done", 0, 1.0, "late")
    assert not (local.work_dir / "done" / "0" / "stop.json").exists()
    local.launch(make_spec("a").python(IGNORE_SIGTERM).with_(env={"OUT": str(out)}).build())
    wait_file(out / "ready-0")
    local.stop("a", 0, 120.0, "first")
    first = (local.work_dir / "a" / "0" / "preempt-deadline").read_text()
    local.stop("a", 0, 600.0, "longer")  # never pushes the deadline back
    assert (local.work_dir / "a" / "0" / "preempt-deadline").read_text() == first
    local.stop("a", 0, 0.0, "now")  # brings it forward
    [got] = wait_ended(local, "a")
    assert (got.state, got.reason, got.message) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, "first")


def test_the_backend_kills_a_worker_whose_runner_hangs(work: Path, out: Path) -> None:
    backend = LocalBackend(work, nodes=virtual_nodes(), kill_slack_seconds=0.2)
    backend.launch(make_spec("a").python(IGNORE_SIGTERM).with_(env={"OUT": str(out)}).build())
    child = int(wait_file(out / "ready-0"))
    os.kill(runner_pid(work, "a"), signal.SIGSTOP)  # a runner that can no longer act
    backend.stop("a", 0, 0.2, "preempted")
    [got] = wait_ended(backend, "a")
    assert (got.state, got.reason, got.exit_code) == (
        WorkerState.STOPPED, base.KILLED_AFTER_GRACE, -signal.SIGKILL)
    assert "corral killed it" in got.message
    eventually(lambda: local_runner.identify(child) is None, "the worker to be gone")


# --- idempotency and gangs --------------------------------------------------------------------

def test_launch_is_idempotent_even_across_a_restart(local: LocalBackend, out: Path) -> None:
    code = WAIT_FOR_GO.replace("(out / f\"ready", "open(out / 'starts', 'a').write('x\\n'); (out / f\"ready")
    spec = make_spec("a").python(code).with_(env={"OUT": str(out)}).build()
    local.launch(spec)
    local.launch(spec)
    restarted = LocalBackend(local.work_dir, nodes=virtual_nodes(2, 4))
    restarted.launch(spec)
    with pytest.raises(LaunchConflict, match="new attempt"):
        restarted.launch(make_spec("a").command("true").build())
    wait_file(out / "ready-0")
    (out / "go").touch()
    wait_ended(restarted, "a")
    assert (out / "starts").read_text() == "x\n"


def test_a_failed_launch_leaves_no_worker_running(
    local: LocalBackend, out: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_spawn = LocalBackend._spawn

    def spawn_fails_for_worker_1(self: LocalBackend, record: object, worker: int) -> None:
        if worker == 1:
            raise OSError(11, "Resource temporarily unavailable")
        real_spawn(self, record, worker)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalBackend, "_spawn", spawn_fails_for_worker_1)
    spec = make_spec("a").workers(2).python(WAIT_FOR_GO).with_(env={"OUT": str(out)}).build()
    with pytest.raises(LaunchError, match="could not start worker 1"):
        local.launch(spec)
    got = wait_ended(local, "a")
    assert got[0].state == WorkerState.STOPPED
    assert (got[1].state, got[1].reason) == (WorkerState.LOST, base.LAUNCH_INTERRUPTED)


# --- a control-plane restart ------------------------------------------------------------------

def test_a_new_backend_readopts_a_running_worker(local: LocalBackend, out: Path) -> None:
    local.launch(make_spec("a").python(WAIT_FOR_GO).with_(env={"OUT": str(out)}).build())
    wait_file(out / "ready-0")
    eventually(lambda: statuses_of(local, "a")[0].state == WorkerState.RUNNING, "running")
    # The control plane "crashes": the old instance is never used again, its workers run on in
    # their own sessions, and a new instance starts over the same work dir.
    restarted = LocalBackend(local.work_dir, nodes=virtual_nodes(2, 4))
    assert [s.state for s in statuses_of(restarted, "a")] == [WorkerState.RUNNING]
    (out / "go").touch()
    [got] = wait_ended(restarted, "a")
    assert (got.state, got.exit_code) == (WorkerState.SUCCEEDED, 0)


def test_a_new_backend_learns_how_a_worker_ended_while_it_was_down(
    local: LocalBackend, out: Path,
) -> None:
    local.launch(make_spec("a").python("import sys; sys.exit(5)").build())
    runner = local_runner.read_identity(local.work_dir / "a" / "0" / "worker-0" / "spawn.json")
    assert runner is not None
    eventually(lambda: not local_runner.is_alive(runner), "the worker to end unobserved")
    restarted = LocalBackend(local.work_dir, nodes=virtual_nodes(2, 4))
    [got] = statuses_of(restarted, "a")
    assert (got.state, got.reason, got.exit_code) == (WorkerState.FAILED, base.EXITED, 5)


def test_a_runner_killed_without_a_record_is_lost_and_its_worker_killed(
    local: LocalBackend, out: Path,
) -> None:
    local.launch(make_spec("a").python(WAIT_FOR_GO).with_(env={"OUT": str(out)}).build())
    child = int(wait_file(out / "ready-0"))
    os.kill(runner_pid(local.work_dir, "a"), signal.SIGKILL)  # as the OOM killer would
    [got] = wait_ended(local, "a")
    assert (got.state, got.reason, got.exit_code) == (
        WorkerState.LOST, base.PROCESS_GONE, None)
    eventually(lambda: local_runner.identify(child) is None, "the orphaned worker to be killed")


def test_release_forgets_an_ended_attempt_but_keeps_its_logs(local: LocalBackend,
                                                             out: Path) -> None:
    local.launch(make_spec("a").python(WAIT_FOR_GO).with_(env={"OUT": str(out)}).build())
    wait_file(out / "ready-0")
    with pytest.raises(AttemptStillRunning):
        local.release("a", 0)
    (out / "go").touch()
    wait_ended(local, "a")
    local.release("a", 0)
    local.release("a", 0)
    assert local.poll(1.0) == []
    assert LocalBackend(local.work_dir, nodes=virtual_nodes(2, 4)).poll(1.0) == []
    assert local.read_logs("a", 0) == (b"", 0)  # still readable (it printed nothing)


# --- specs the local backend cannot run -------------------------------------------------------

@pytest.mark.parametrize(
    ("builder", "field", "hint"),
    [
        pytest.param(lambda: make_spec("../escape"), "workload_id", "letters, digits",
                     id="unsafe-workload-id"),
        pytest.param(lambda: make_spec().command("no-such-program-xyz"), "command",
                     "not found on PATH", id="program-not-found"),
        pytest.param(lambda: make_spec().command("./missing.sh"), "command",
                     "not an executable file", id="relative-program-missing"),
        pytest.param(lambda: make_spec().with_(working_dir="/no/such/dir"), "working_dir",
                     "not a directory", id="missing-working-dir"),
        pytest.param(lambda: make_spec().on("gpu-box-9"), "assignments", "not in this backend",
                     id="unknown-node"),
        pytest.param(lambda: make_spec().devices(4), "assignments", "has 4 GPUs",
                     id="device-out-of-range"),
    ],
)
def test_specs_that_cannot_run_here_are_refused_clearly(
    local: LocalBackend, builder: object, field: str, hint: str,
) -> None:
    with pytest.raises(InvalidLaunchSpec) as caught:
        local.launch(builder().build())  # type: ignore[operator]
    assert caught.value.field == field and hint in str(caught.value)
    assert local.poll(0.0) == []


# --- the runner on its own --------------------------------------------------------------------

def run_runner(tmp_path: Path, *argv: str) -> dict[str, object]:
    record_dir = tmp_path / "rec"
    subprocess.run([sys.executable, "-I", local_runner.__file__, "--record-dir", str(record_dir),
                    "--deadline-file", str(tmp_path / "deadline"), "--", *argv],
                   check=False, capture_output=True)
    exit_record = local_runner.read_json(record_dir / "exit.json")
    assert exit_record is not None
    return exit_record


def test_runner_does_not_start_a_worker_already_stopped(tmp_path: Path) -> None:
    (tmp_path / "deadline").write_text("1.0\n")
    got = run_runner(tmp_path, sys.executable, "-c", "open('started', 'w')")
    assert (got["exit_code"], got["stopped"], got["reason"]) == (
        None, True, base.STOPPED_BEFORE_START)
    assert not (tmp_path / "rec" / "child.json").exists()


def test_runner_records_a_program_that_cannot_run(tmp_path: Path) -> None:
    got = run_runner(tmp_path, str(tmp_path / "missing-program"))
    assert (got["exit_code"], got["reason"]) == (127, base.COMMAND_NOT_FOUND)


def test_runner_reports_signals_as_negative_exit_codes(tmp_path: Path) -> None:
    got = run_runner(tmp_path, sys.executable, "-c", "import os; os.kill(os.getpid(), 9)")
    assert (got["exit_code"], got["stopped"]) == (-9, False)


def test_an_unreadable_record_is_skipped_not_fatal(work: Path, local: LocalBackend) -> None:
    local.launch(make_spec("good").build())
    wait_ended(local, "good")
    bad = work / "bad" / "0"
    bad.mkdir(parents=True)
    (bad / "launch.json").write_text('{"version": 99, "spec": {}}')
    restarted = LocalBackend(work, nodes=virtual_nodes(2, 4))
    assert [s.workload_id for s in restarted.poll(0.0)] == ["good"]
    assert restarted.unreadable_records == [bad / "launch.json"]
    with pytest.raises(LaunchConflict, match="cannot be read"):
        restarted.launch(make_spec("bad").build())


def test_virtual_nodes_can_declare_their_size() -> None:
    nodes = virtual_nodes(3, 8, cpu_milli=64_000, memory_mib=262_144, prefix="v")
    assert [(n.id, n.gpu_count, n.cpu_milli, n.memory_mib) for n in nodes] == [
        (f"v-{i}", 8, 64_000, 262_144) for i in range(3)]
