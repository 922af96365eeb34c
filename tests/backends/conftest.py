"""Builders and waiting helpers for backend tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from corral.backends.base import LaunchSpec
from corral.backends.local import LocalBackend, virtual_nodes
from corral.core.model import WorkerAssignment

T = TypeVar("T")

#: worker programs the engine backends' tests run (Ray, Slurm, Slurm arrays and gangs)
#: prints the corral and CUDA variables the worker got, as one JSON line
SHOW_ENV = ("import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
            "if k.startswith(('CORRAL_', 'CUDA_'))}), flush=True)")
#: exits 0 on SIGTERM, saying whether the preemption deadline file was there
CHECKPOINT_ON_TERM = """
import os, signal, sys, time, pathlib
def on_term(*_):
    seen = pathlib.Path(os.environ["CORRAL_PREEMPT_DEADLINE_FILE"]).exists()
    print(f"SIGTERM; deadline file seen: {seen}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("running", flush=True)
while True:
    time.sleep(0.05)
"""


@dataclass
class SpecBuilder:
    """make_spec("train").workers(2).devices(0, 1).python("print(1)").build()"""

    workload_id: str = "wl"
    _attempt: int = 0
    _workers: int = 1
    _devices: tuple[int, ...] = (0,)
    _milli: int = 1000
    _memory: int = 81920
    _nodes: Sequence[str] = ("local-0", "local-1")
    _command: tuple[str, ...] | str = ("true",)
    _shell: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def attempt(self, n: int) -> SpecBuilder:
        self._attempt = n
        return self

    def workers(self, n: int) -> SpecBuilder:
        self._workers = n
        return self

    def devices(self, *devices: int) -> SpecBuilder:
        self._devices = devices
        return self

    def share(self, milli: int, memory_mib: int) -> SpecBuilder:
        self._milli, self._memory = milli, memory_mib
        return self

    def on(self, *nodes: str) -> SpecBuilder:
        self._nodes = nodes
        return self

    def command(self, *argv: str) -> SpecBuilder:
        self._command = argv
        return self

    def python(self, code: str) -> SpecBuilder:
        return self.command(sys.executable, "-c", code)

    def shell(self, line: str) -> SpecBuilder:
        self._command, self._shell = line, True
        return self

    def with_(self, **fields: Any) -> SpecBuilder:
        self.extra.update(fields)
        return self

    def build(self) -> LaunchSpec:
        assignments = tuple(
            WorkerAssignment(worker=i, node_id=self._nodes[i % len(self._nodes)],
                             devices=self._devices, milli_per_device=self._milli,
                             gpu_memory_mib_per_device=self._memory)
            for i in range(self._workers))
        fields: dict[str, Any] = {"queue": "research", "user": "ada", **self.extra}
        return LaunchSpec(workload_id=self.workload_id, attempt=self._attempt,
                          assignments=assignments, command=self._command, shell=self._shell,
                          **fields)


def make_spec(workload_id: str = "wl") -> SpecBuilder:
    return SpecBuilder(workload_id=workload_id)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something truthy; fail (not time) if it never does.

    The timeout only guards against a hang; no test asserts how long anything took.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def local(tmp_path: Any) -> LocalBackend:
    return LocalBackend(tmp_path / "work", nodes=virtual_nodes(2, 4))
