"""A real `corral up` in a subprocess, for end-to-end tests and benchmarks.

Started on a free loopback port with its own data dir, waited for until its API answers and its
admin token exists, and stopped by PID (SIGINT, then SIGKILL), never by name. Workers of the local
backend outlive the server by design (a restarted server re-adopts them), so `stop_workers`
kills the process groups this server's data dir recorded, only while their recorded identity
(pid and start time) still matches, so a reused pid is never hit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from corral.sdk import Client, CorralError
from corral.sdk import models as M
from corral.sdk.retry import Retries
from corral.testing.fake_pynvml import FakeGpu, install_shim

__all__ = ["CorralServer", "PromptClient", "free_port", "stop_workers", "up_on_fake_gpus"]

#: what `corral up` says when its --port is taken (corral.cli.server.listen)
PORT_TAKEN = "is already in use"
#: the longest pause between a test client's polls in `wait` (the SDK's default is 2 s)
TEST_MAX_POLL_S = 0.5


class PromptClient(Client):
    """The SDK client whose `wait` polls at least every TEST_MAX_POLL_S. The SDK's interval
    grows to 2 s so that a wait on a days-long job does not hammer the API; a test's jobs end
    within seconds, and a 2 s poll found each of them ~1 s (up to 2 s) after it ended, on every
    one of the suite's ~100 waits on a real `corral up`."""

    def wait(self, workload_id: str, *, states: set[str] | None = None,
             timeout_s: float | None = None, poll_s: float = 0.2,
             max_poll_s: float = TEST_MAX_POLL_S) -> M.Workload:
        return super().wait(workload_id, states=states, timeout_s=timeout_s, poll_s=poll_s,
                            max_poll_s=max_poll_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CorralServer:
    data_dir: Path
    db: str | None = None
    port: int = field(default_factory=free_port)
    pool: Path | None = None  # None: cwd has no examples/, so the virtual pool is used
    extra_env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # default: the data dir
    #: `corral up --worker-user`: "same" by default, since test workers run this interpreter,
    #: which another user may not reach (under /root); None: corral's own default
    worker_user: str | None = "same"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "CORRAL_DATA_DIR": str(self.data_dir), "CORRAL_URL": self.url,
                "COLUMNS": "200", **self.extra_env}

    def start(self, *extra: str, timeout: float = 60.0) -> CorralServer:
        """Start `corral up` and wait until it answers. On a first start whose port another
        process took between `free_port` and corral's bind (more likely with several pytest-xdist
        workers starting servers at once), try again on a new port, up to twice; a restart keeps
        its port, since the test may have handed it out."""
        for attempt in range(3):
            first = self.proc is None
            log_start = self._log_size()
            try:
                return self._start_once(extra, timeout)
            except RuntimeError:
                if not (first and attempt < 2 and PORT_TAKEN in self.log(since=log_start)):
                    raise
                self.proc = None
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, extra: tuple[str, ...], timeout: float) -> CorralServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "corral.cli.main", "up", "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--grace", "2", "--interval", "0.2", *extra]
        if self.pool is not None:
            args += ["--pool", str(self.pool)]
        if self.db:
            args += ["--db", self.db]
        if self.worker_user is not None:
            args += ["--worker-user", self.worker_user]
        with open(self.data_dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(args, cwd=self.cwd or self.data_dir, env=self.env(),
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral up exited {self.proc.returncode}: {self.log()}")
            try:
                # a short probe, sent once: until corral binds, the port may be another
                # program's that accepts and never answers (the taken-port test's squatter),
                # and the SDK's default 30 s read timeout with retries waited a minute there
                with Client(self.url, timeout=2.0, retries=Retries(attempts=1)) as c:
                    c.health()
                if (self.data_dir / "admin-token").exists():
                    return self
            except CorralError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"corral up did not answer in {timeout}s: {self.log()}")

    def log(self, since: int = 0) -> str:
        """The last 3000 characters of server.log (from byte `since` on)."""
        p = self.data_dir / "server.log"
        if not p.exists():
            return ""
        with open(p, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")[-3000:]

    def _log_size(self) -> int:
        p = self.data_dir / "server.log"
        return p.stat().st_size if p.exists() else 0

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def client(self, token: str | None = None) -> Client:
        return PromptClient(self.url, token or self.token)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def stop_workers(self) -> None:
        stop_workers(self.data_dir)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "corral.cli.main", *args], env=self.env(),
                           cwd=self.cwd or self.data_dir, capture_output=True, text=True,
                           timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def cli_json(self, *args: str) -> object:
        return json.loads(self.cli(*args, "--json").stdout)


def stop_workers(data_dir: Path) -> None:
    """Kill what the workers of `data_dir`'s local backend left running (see module doc)."""
    from corral.backends.local_runner import is_alive, kill_group, read_identity

    for record in sorted(data_dir.glob("work/*/*/worker-*/*.json")):
        if record.name not in ("runner.json", "child.json"):
            continue
        identity = read_identity(record)
        if identity is not None and is_alive(identity):
            kill_group(identity.pid, signal.SIGKILL)


@contextmanager
def up_on_fake_gpus(tmp: Path, gpus: Sequence[FakeGpu],
                    probe_interval: str = "0.5") -> Iterator[CorralServer]:
    """A real `corral up` whose own host (the local backend's node) has `gpus`, served by the fake
    pynvml first on the server's PYTHONPATH, probed every `probe_interval` seconds; stopped, with
    its workers, afterwards."""
    state = tmp / "nvml.json"
    state.write_text(json.dumps({"gpus": [asdict(g) for g in gpus]}))
    shim = install_shim(tmp / "fake-nvml", state).parent
    path = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    server = CorralServer(tmp / "data", extra_env={"PYTHONPATH": path})
    server.start("--gpu-probe-interval", probe_interval)
    try:
        yield server
    finally:
        server.stop()
        server.stop_workers()
