"""A control plane on a real engine, stepped by the test (`corral.testing.plane`, shared with
tests/chaos/plane.py): workflow tests submit shell lines of one GPU to the "flows" queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.backends.base import Backend
from corral.testing.plane import ControlPlane

QUEUE = "flows"


class Plane(ControlPlane):
    @classmethod
    def start(cls, tmp: Path, backend: Backend, **kwargs: Any) -> Plane:
        return super().start(tmp, backend, queue=QUEUE, grace_s=2.0, **kwargs)

    def submit(self, name: str, shell: str, **fields: Any) -> list[str]:
        return self.submit_spec({"name": name, "gpus": 1, "shell": shell, **fields})
