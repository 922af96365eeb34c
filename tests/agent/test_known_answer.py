"""The known-answer test (silent data corruption), against `corral.testing.fake_cupy`: numpy
pretending to be cupy, whose device 1 hands back a corrupted value. No GPU is used; numpy on the
CPU computes the reference."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from corral.agent import known_answer as K
from corral.agent.health import GpuReporter, KnownAnswerSchedule
from corral.backends.health import DeviceHealth, FakeGpuHealthProbe
from corral.testing.fake_cupy import fake_cupy, install_shim

SMALL = {"n": 64, "words": 4096}


class FakeCompute:
    """A Compute over fake_cupy's module (the CupyCompute code path, with a fake library)."""

    def __init__(self, devices: int, corrupt: set[int]) -> None:
        self.inner = K.CupyCompute.__new__(K.CupyCompute)
        self.inner.cp = fake_cupy(devices, corrupt)
        self.name = "fake-cupy"

    def count(self) -> int:
        return self.inner.count()

    def matmul(self, device, a, b):  # type: ignore[no-untyped-def]
        return self.inner.matmul(device, a, b)

    def invert(self, device, words):  # type: ignore[no-untyped-def]
        return self.inner.invert(device, words)


def test_the_reference_is_exact_integer_arithmetic() -> None:
    a, b, pattern = K.inputs(**SMALL)
    product, inverted = K.expected(a, b, pattern)
    assert np.array_equal(product, (a.astype(np.float64) @ b.astype(np.float64)))
    assert np.abs(product).max() < 2**24  # float32 holds every value exactly
    assert np.array_equal(inverted, -pattern.astype(np.int64) - 1)


def test_a_device_that_corrupts_its_answer_fails_with_the_evidence() -> None:
    results = K.run_on_devices(FakeCompute(3, {1}), [0, 1, 2], SMALL["n"], SMALL["words"])
    assert [r.passed for r in results] == [True, False, True]
    assert "matmul: 1 of 4096 values wrong (first at 0:" in results[1].evidence
    assert "memory pattern: 1 of 4096 values wrong" in results[1].evidence


def test_a_device_that_throws_fails() -> None:
    [r] = K.run_on_devices(FakeCompute(1, set()), [5], SMALL["n"], SMALL["words"])
    assert not r.passed and "did not complete" in r.evidence and "invalid device" in r.evidence


def _child_env(tmp_path: Path, devices: int, corrupt: list[int]) -> dict[str, str]:
    state = tmp_path / "cupy.json"
    state.write_text(json.dumps({"devices": devices, "corrupt": corrupt}))
    shim = install_shim(tmp_path / "shim", state).parent
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(shim), os.environ.get("PYTHONPATH")]))}


def test_the_child_process_runs_the_test_and_reports_per_device(tmp_path: Path) -> None:
    run = K.KnownAnswerRun([0, 1], now=0.0, env=_child_env(tmp_path, 2, [1]))
    run.proc.wait(timeout=60)
    answer = run.poll(1.0)
    assert isinstance(answer, list)
    assert [(r.device, r.passed) for r in answer] == [(0, True), (1, False)]


def test_without_torch_or_cupy_the_child_says_unavailable(tmp_path: Path) -> None:
    if K.available_library():
        pytest.skip("torch or cupy is installed here")
    run = K.KnownAnswerRun([0], now=0.0, env={**os.environ, "PYTHONPATH": ""})
    run.proc.wait(timeout=60)
    assert run.poll(1.0) == K.NO_LIBRARY


class StubRun:
    """A run that answers at once with what the test set (no child process)."""

    def __init__(self, devices: list[int], now: float, answers: dict[int, str]) -> None:
        self.devices = tuple(devices)
        self.answers = answers

    def poll(self, now: float) -> list[K.DeviceResult]:
        return [K.DeviceResult(d, d not in self.answers, self.answers.get(d, ""))
                for d in self.devices]

    def close(self) -> None:
        pass


def _schedule(answers: dict[int, str], started: list[tuple[int, ...]]) -> KnownAnswerSchedule:
    def start(devices: list[int], now: float) -> StubRun:
        started.append(tuple(devices))
        return StubRun(devices, now, answers)
    return KnownAnswerSchedule(100.0, 4, start=start, library=lambda: "cupy")  # type: ignore[arg-type]


def test_idle_devices_are_tested_at_start_and_busy_ones_once_idle() -> None:
    started: list[tuple[int, ...]] = []
    answers = {2: "matmul: 1 of 9 values wrong"}
    kat = _schedule(answers, started)
    kat.step(0.0, busy={1})
    assert started == [(0, 2, 3)]  # at join, every device but the one a worker holds
    assert kat.step(1.0, busy={1}) and kat.failed == {2: answers[2]}
    assert started == [(0, 2, 3)]  # nothing more is due; 1 is still busy
    kat.step(2.0, busy=set())
    assert started[-1] == (1,)  # free now: tested
    answers.clear()  # repaired (or a transient fault): the next run passes
    kat.step(3.0, busy=set())
    kat.step(150.0, busy=set())
    assert started[-1] == (0, 1, 2, 3) and kat.step(151.0, busy=set()) and kat.failed == {}


def test_a_failed_device_is_a_drain_check_and_unavailable_is_said_plainly() -> None:
    probe = FakeGpuHealthProbe([DeviceHealth(i, 0.0) for i in range(4)])
    started: list[tuple[int, ...]] = []
    kat = _schedule({3: "memory pattern: 2 of 16 values wrong"}, started)
    reporter = GpuReporter(10.0, 4, "H100", probe=lambda _: probe, known_answer=kat)
    reporter.report(0.0)
    health = reporter.report(0.5)  # the run answered: a new verdict at once
    assert health is not None and health.health == "unhealthy"
    [check] = health.checks
    assert (check.name, check.device, check.severity) == ("known-answer", 3, "drain")
    assert "silent data corruption" in check.reason and "2 of 16" in check.reason

    none = GpuReporter(10.0, 4, "H100", probe=lambda _: probe,
                       known_answer=KnownAnswerSchedule(100.0, 4, library=lambda: ""))
    said = none.report(0.0)
    assert said is not None and said.health == "healthy"
    assert said.reason == "all 4 GPUs healthy; known-answer test unavailable (no torch/cupy)"


def test_the_module_runs_as_a_script(tmp_path: Path) -> None:
    import subprocess
    out = subprocess.run([sys.executable, "-m", "corral.agent.known_answer", "--matmul-n", "32",
                          "--memory-words", "64"], env=_child_env(tmp_path, 2, []),
                         capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(out.stdout)
    assert answer["library"] == "cupy"
    assert [r["passed"] for r in answer["results"]] == [True, True]


DCGM_REPORT = {"DCGM GPU Diagnostic": {"test_categories": [
    {"category": "Deployment", "tests": [
        {"name": "Blacklist", "results": [{"gpu_ids": "0,1", "status": "PASS"}]}]},
    {"category": "Hardware", "tests": [
        {"name": "GPU Memory", "results": [
            {"gpu_ids": "0", "status": "PASS"},
            {"gpu_ids": "1", "status": "FAIL",
             "warnings": [{"warning": "Memory error detected at address 0x4f2"}]}]},
        {"name": "Diagnostic", "results": [{"gpu_ids": "0", "status": "WARN",
                                            "warnings": "clocks throttled"}]}]}]}}


def test_dcgm_failures_by_gpu_and_warnings_are_not_failures() -> None:
    assert K.dcgm_failures(DCGM_REPORT) == {
        1: "GPU Memory failed (Memory error detected at address 0x4f2)"}
    assert K.dcgm_failures({"unexpected": 1}) == {}


def test_where_dcgmi_is_installed_its_failures_fail_the_device(tmp_path: Path) -> None:
    """A fake `dcgmi` on PATH (a script printing DCGM's JSON: not NVIDIA's tool)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dcgmi"
    fake.write_text(f"#!/bin/sh\n# a fake dcgmi for tests\ncat <<'EOF'\n"
                    f"{json.dumps(DCGM_REPORT)}\nEOF\n")
    fake.chmod(0o755)
    env = _child_env(tmp_path, 2, [])
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    run = K.KnownAnswerRun([0, 1], now=0.0, env=env)
    run.proc.wait(timeout=60)
    answer = run.poll(1.0)
    assert isinstance(answer, list)
    assert [(r.device, r.passed) for r in answer] == [(0, True), (1, False)]
    assert answer[1].evidence == ("DCGM diagnostic: GPU Memory failed (Memory error detected "
                                  "at address 0x4f2)")
