"""A corral control plane on a real engine, driven by the test (`corral.testing.plane`, shared
with tests/integration/plane.py), plus the training job of examples/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from corral.backends.base import Backend
from corral.store import Store
from corral.testing.plane import ControlPlane

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train_ckpt.py"
QUEUE = "train"


def train_args(steps: int, step_seconds: float, every: int) -> list[str]:
    return [sys.executable, str(TRAIN), "--steps", str(steps), "--step-seconds",
            str(step_seconds), "--checkpoint-every", str(every)]


def fault_free(tmp: Path, workers: int, steps: int, every: int) -> dict[int, str]:
    """Each worker's result (SHA-256 of its weights) from a run that nothing interrupts."""
    out = {}
    for w in range(workers):
        env = {**os.environ, "CORRAL_WORKER_INDEX": str(w), "CORRAL_WORKERS": str(workers),
               "CORRAL_CHECKPOINT_DIR": str(tmp / "reference")}
        subprocess.run(train_args(steps, 0.0, every), env=env, check=True, capture_output=True,
                       timeout=120)
        out[w] = json.loads((tmp / "reference" / f"result-w{w}.json").read_text())["sha256"]
    return out


def results(ckpt: Path, workers: int) -> dict[int, str]:
    return {w: json.loads((ckpt / f"result-w{w}.json").read_text())["sha256"]
            for w in range(workers) if (ckpt / f"result-w{w}.json").exists()}


def events(ckpt: Path, worker: int) -> list[dict[str, Any]]:
    path = ckpt / f"events-w{worker}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def progress(ckpt: Path, worker: int, attempt: int) -> int:
    """The last step worker `worker` logged in `attempt` (0 before any)."""
    return max((e["step"] for e in events(ckpt, worker)
                if e["attempt"] == attempt and e["event"] == "step"), default=0)


class Plane(ControlPlane):
    """`corral.testing.plane.ControlPlane` on the "train" queue, submitting commands."""

    @classmethod
    def start(cls, tmp: Path, backend: Backend, *, grace_s: float = 5.0,  # type: ignore[override]
              store: Store | None = None) -> Plane:
        return super().start(tmp, backend, queue=QUEUE, grace_s=grace_s, store=store)

    def submit(self, name: str, command: list[str], **fields: Any) -> str:
        return self.submit_spec({"name": name, "command": command, **fields})[0]
