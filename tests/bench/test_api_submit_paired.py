"""bench/api_submit.py --paired (issue 14): the store and the no-op take turns in ABBA order,
and each one's figures come from its own bursts only. Behaviour only: no timing is asserted."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api_submit.py"


@pytest.fixture
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_submit_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bursts_alternate_abba_and_each_side_counts_its_own(
        bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    cpu = {101: 0.0, 202: 0.0}

    def drive(url: str, token: str, total: int, clients: int) -> tuple[list[float], float]:
        order.append(url)
        if url == "store":  # 2 ms a request, 1 s a burst; the server spends 0.5 ms each
            cpu[101] += total * 0.0005
            return [0.002] * total, 1.0
        cpu[202] += total * 0.0001
        return [0.001] * total, 0.25  # the no-op: 4x the store's rate

    monkeypatch.setattr(bench, "drive", drive)
    monkeypatch.setattr(bench, "_cpu_s", lambda pid: cpu[pid])
    args = argparse.Namespace(clients=[16], bursts=8, submissions=4000)
    out: dict[str, Any] = bench.paired((101, "store", "t"), (202, "noop"), args)
    assert order == ["store", "noop", "noop", "store", "store", "noop", "noop", "store"]
    assert out["per_burst"] == 496 and out["bursts"] == 8  # whole rounds of 16 clients
    assert out["store"]["submissions_per_second"] == 496.0  # 4 x 496 in 4 s
    assert out["noop"]["submissions_per_second"] == 1984.0
    assert out["of_noop"] == 0.25
    assert (out["store"]["server_cpu_ms"], out["noop"]["server_cpu_ms"]) == (0.5, 0.1)
    assert (out["store"]["p50_ms"], out["noop"]["p99_ms"]) == (2.0, 1.0)
