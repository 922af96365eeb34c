"""A real `corral up` in a subprocess for the browser tests: a declared pool of two providers
and nested queues, started and stopped by the tests (by PID, never by name)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from corral.testing.corral_up import CorralServer

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


def tiny_png(width: int = 48, height: int = 24) -> bytes:
    """A valid PNG (a blue-to-orange gradient), written without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(c for x in range(width)
                                    for c in (78 + x * 3, 121, 167 - x * 2)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class CorralUp(CorralServer):
    """The shared `corral up` harness with the dashboard test's pool, a sampler every second and
    a directory of simulator reports; it stops its workers when it stops."""

    def __init__(self, root: Path) -> None:
        reports = root / "sim-reports"
        super().__init__(root / "data", pool=root / "pool.yaml", cwd=root,
                         extra_env={"CORRAL_USAGE_SAMPLE_S": "1",
                                    "CORRAL_SIM_REPORTS": str(reports)})
        self.root, self.reports = root, reports

    def start(self, *extra: str, timeout: float = 60.0) -> CorralUp:
        self.reports.mkdir(parents=True, exist_ok=True)
        (self.reports / "utilization.png").write_bytes(tiny_png())
        (self.reports / "summary.json").write_text('{"policy": "fair", "jct_p50_s": 431.5, '
                                                   '"utilization": 0.82, "jain_index": 0.97}')
        (self.root / "pool.yaml").write_text(POOL)
        super().start(*extra, timeout=timeout)
        return self

    def stop(self) -> None:
        super().stop()
        self.stop_workers()
