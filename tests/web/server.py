"""A real `corral up` in a subprocess for the browser tests: a declared pool of two providers
and nested queues, started and stopped by the tests (by PID, never by name)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from corral.sdk import Client, CorralError

POOL = """\
providers:
  - name: onprem-fra
    capacity_kind: owned
    region: eu-central
    zone: fra-dc1
    prices: {A100: 0.90}
    node_groups:
      - {name: dgx, count: 2, gpu_model: A100, gpus: 4, gpu_memory: 80GiB, cpu: 64, memory: 256GiB}
  - name: gcp-spot
    capacity_kind: spot
    region: us-central1
    zone: us-central1-a
    prices: {L4: 0.28}
    node_groups:
      - {name: g2, count: 2, gpu_model: L4, gpus: 2, gpu_memory: 24GiB, cpu: 32, memory: 128GiB}
queues:
  - {name: research, quota_gpus: 6, limit_gpus: 10, weight: 2}
  - {name: research-nlp, parent: research, quota_gpus: 4}
  - {name: research-vision, parent: research, quota_gpus: 2}
  - {name: prod, quota_gpus: 4, priority: 10}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_png(width: int = 48, height: int = 24) -> bytes:
    """A valid PNG (a blue-to-orange gradient), written without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(c for x in range(width)
                                    for c in (78 + x * 3, 121, 167 - x * 2)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@dataclass
class CorralUp:
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.token)

    def start(self, timeout: float = 60.0) -> CorralUp:
        reports = self.root / "sim-reports"
        reports.mkdir(parents=True, exist_ok=True)
        (reports / "utilization.png").write_bytes(tiny_png())
        (reports / "summary.json").write_text('{"policy": "fair", "jct_p50_s": 431.5, '
                                              '"utilization": 0.82, "jain_index": 0.97}')
        (self.root / "pool.yaml").write_text(POOL)
        env = {**os.environ, "CORRAL_USAGE_SAMPLE_S": "1", "CORRAL_SIM_REPORTS": str(reports)}
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral.cli.main", "up", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--pool", str(self.root / "pool.yaml"), "--grace", "2"],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
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
        p = self.root / "server.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._stop_workers()

    def _stop_workers(self) -> None:
        """Workers outlive the server by design (the local backend re-adopts them); kill the
        ones this server started: each recorded process group whose identity still matches."""
        from corral.backends.local_runner import is_alive, kill_group, read_identity

        for record in sorted(self.data_dir.glob("work/*/*/worker-*/*.json")):
            if record.name in ("runner.json", "child.json"):
                identity = read_identity(record)
                if identity is not None and is_alive(identity):
                    kill_group(identity.pid, signal.SIGKILL)
