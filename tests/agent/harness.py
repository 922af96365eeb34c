"""`corral agent` processes for tests: started with a join token on this machine, each with its
own node id and data dir, stopped by PID (never by name). Killing an agent "as a host dies"
also kills the worker process groups its data dir recorded (checked by start time, so a reused
pid is never hit): a dead machine takes its processes with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from corral.backends.local_runner import CHILD_RECORD, RUNNER_RECORD, is_alive, read_identity


@dataclass
class AgentProc:
    server: str
    data_dir: Path
    node_id: str
    join_token: str | None = None
    gpus: int = 4
    extra: list[str] = field(default_factory=list)
    worker_user: str = "same"  # test workers run this interpreter, which is under /root
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "corral.agent", "--server", self.server,
                "--data-dir", str(self.data_dir / "state"), "--node-id", self.node_id,
                "--gpus", str(self.gpus), "--gpu-model", "virtual-gpu",
                "--gpu-memory-mib", "81920", "--cpu", "16", "--memory-mib", "65536",
                "--address", "127.0.0.1", "--worker-user", self.worker_user, "--poll-wait", "0.5",
                "--lease", "4", *self.extra]
        if self.join_token:
            args += ["--join-token", self.join_token]
        with open(self.data_dir / "agent.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1",
                                              **self.env})
        return self

    def log(self) -> str:
        path = self.data_dir / "agent.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM (the agent stops, its workers run on), then SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill_host(self) -> None:
        """As if the machine died: the agent and every process it started, at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.kill_workers()

    def kill_workers(self) -> None:
        for record in (self.data_dir / "state" / "work").glob("*/*/worker-*/"):
            for name in (CHILD_RECORD, RUNNER_RECORD):
                who = read_identity(record / name)
                if who is not None and is_alive(who):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(who.pid, signal.SIGKILL)


def wait_for(probe, what: str, timeout: float = 60.0, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(every)
