"""A real `corral up` with a priced pool in a subprocess; started, killed (by PID) and restarted
by the tests, and its workers' process groups killed by their recorded identity at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from corral.sdk import Client, CorralError

#: 36 credits per GPU-hour: one GPU-second costs exactly 0.01
POOL = {
    "providers": [{
        "name": "local", "capacity_kind": "owned",
        "node_groups": [{"name": "box", "count": 2, "gpu_model": "virtual-gpu", "gpus": 4,
                         "gpu_memory": "80GiB", "cpu": 64, "memory": "256GiB",
                         "price_per_gpu_hour": 36}],
    }],
    "queues": [{"name": "research", "quota_gpus": 8}],
    "ledger": {"enforce": True, "window": 60},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PricedCorral:
    data_dir: Path
    db: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "CORRAL_DATA_DIR": str(self.data_dir), "CORRAL_URL": self.url,
                "COLUMNS": "200"}

    def start(self, timeout: float = 60.0) -> PricedCorral:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pool = self.data_dir / "pool.yaml"
        pool.write_text(yaml.safe_dump(POOL))
        args = [sys.executable, "-m", "corral.cli.main", "up", "--data-dir", str(self.data_dir),
                "--port", str(self.port), "--pool", str(pool), "--grace", "2",
                "--interval", "0.2"]
        if self.db:
            args += ["--db", self.db]
        with open(self.data_dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(args, cwd=self.data_dir, env=self.env(), stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral up exited {self.proc.returncode}: {self.log()}")
            try:
                with Client(self.url) as c:
                    c.health()
                if (self.data_dir / "admin-token").exists():
                    return self
            except CorralError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"corral up did not answer in {timeout}s: {self.log()}")

    def log(self) -> str:
        p = self.data_dir / "server.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def client(self) -> Client:
        return Client(self.url, (self.data_dir / "admin-token").read_text().strip())

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

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "corral.cli.main", *args], env=self.env(),
                           cwd=self.data_dir, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def stop_workers(self) -> None:
        """Kill what the workers left running, only while their recorded identity matches."""
        from corral.backends.local_runner import is_alive, kill_group, read_identity

        for record in sorted(self.data_dir.glob("work/*/*/worker-*/*.json")):
            if record.name not in ("runner.json", "child.json"):
                continue
            identity = read_identity(record)
            if identity is not None and is_alive(identity):
                kill_group(identity.pid, signal.SIGKILL)
