"""The known-answer test: a short computation with an exact, known result on each idle GPU.

Why: ECC, XIDs and the row remapper catch the memory faults the hardware itself notices. The
hyperscalers' fleet studies of *silent* data corruption (Meta, "Silent Data Corruptions at
Scale", Dixit et al. 2021; Google, "Cores that don't count", Hochschild et al., HotOS 2021) found
defective units that compute wrong answers with no error recorded anywhere, and catch them only by
running tests whose answer is known in advance, on every unit, regularly. NVIDIA's DCGM
diagnostics (`dcgmi diag`) do the same for GPUs with longer suites. This is corral's short one,
run by `corral agent` on each device at join and then every `--known-answer-interval` seconds,
only on devices where no worker runs (`corral.agent.health`).

What runs on each device (integers only, so the answer is exact on every GPU model, with or
without TF32, and can be compared bit for bit against numpy's on the host):

- matmul: two seeded 1024 x 1024 matrices of integers in [-8, 8] as float32, multiplied on the
  device. Every product and partial sum is an integer below 2^24, so float32 holds it exactly.
- memory: a seeded pattern of 16 Mi int32 words (64 MiB) copied to the device, inverted bitwise
  there, and copied back.

A device passes when both results equal numpy's exactly; otherwise the evidence is how many
values differ and the first one. Where NVIDIA's `dcgmi` is installed, the same run also asks
DCGM's quick diagnostic (`dcgmi diag -r 1 -j`) and fails a device any of its tests failed
(`dcgm_diag`; a warning or a skip is not a failure). How it runs: in a child process (`python -m
corral.agent.known_answer --devices 0,1`, JSON on stdout), so that the CUDA context and its
memory are gone when the test ends (an agent that kept one would take memory from every job)
and a hung device is killed by a timeout, not the agent. It uses torch (`torch.cuda`) where it is
importable, else cupy; with neither the result says so ("known-answer test unavailable (no
torch/cupy)"): never a pass that did not run.

Tested with `corral.testing.fake_cupy` (numpy pretending to be cupy, with a device that corrupts
what it returns); `scripts/gpu-check` runs it on real GPUs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["NO_LIBRARY", "Compute", "DeviceResult", "KnownAnswerRun", "available_library",
           "dcgm_diag", "dcgm_failures", "expected", "judge", "run_on_devices"]

NO_LIBRARY: Final = "known-answer test unavailable (no torch/cupy)"
SEED: Final = 20211
MATMUL_N: Final = 1024
MEMORY_WORDS: Final = 16 << 20  # 64 MiB of int32
LIBRARIES: Final = ("torch", "cupy")


class Compute(Protocol):
    """One device library's way to run the two tests (torch or cupy)."""

    name: str

    def count(self) -> int: ...

    def matmul(self, device: int, a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]
               ) -> npt.NDArray[np.float32]: ...

    def invert(self, device: int, words: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]: ...


@dataclass(frozen=True, slots=True)
class DeviceResult:
    """One device's outcome: `passed`, else `evidence` (what differed) or `error` (it failed
    to run: the device threw, which is itself a failure)."""

    device: int
    passed: bool
    evidence: str = ""

    def as_record(self) -> dict[str, object]:
        return {"device": self.device, "passed": self.passed, "evidence": self.evidence}


def inputs(n: int = MATMUL_N, words: int = MEMORY_WORDS
           ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """The seeded inputs: the same on every host and every run."""
    rng = np.random.default_rng(SEED)
    a = rng.integers(-8, 9, size=(n, n)).astype(np.float32)
    b = rng.integers(-8, 9, size=(n, n)).astype(np.float32)
    pattern = rng.integers(-(2**31), 2**31, size=words, dtype=np.int64).astype(np.int32)
    return a, b, pattern


def expected(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32],
             pattern: npt.NDArray[np.int32]
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """The known answers, computed on the host's CPU (exact: module docstring)."""
    # float64 through BLAS: every value is an integer below 2^24, far inside float64's exact
    # range (integer matmul in numpy has no BLAS and takes seconds at 1024)
    product = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    return product, np.invert(pattern)


def _differs(name: str, got: npt.NDArray[Any], want: npt.NDArray[Any]) -> str:
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, expected {want.shape}"
    wrong = np.flatnonzero(got.ravel() != want.ravel())
    if not wrong.size:
        return ""
    i = int(wrong[0])
    return (f"{name}: {wrong.size} of {want.size} values wrong (first at {i}: "
            f"{got.ravel()[i].item()!r}, expected {want.ravel()[i].item()!r})")


def judge(device: int, product: npt.NDArray[Any], inverted: npt.NDArray[Any],
          want: tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]) -> DeviceResult:
    """Pure: the device's answers against the known ones."""
    found = [e for e in (_differs("matmul", product, want[0]),
                         _differs("memory pattern", inverted, want[1])) if e]
    return DeviceResult(device, not found, "; ".join(found))


def run_on_devices(compute: Compute, devices: Sequence[int], n: int = MATMUL_N,
                   words: int = MEMORY_WORDS) -> list[DeviceResult]:
    """Run both tests on each device (real hardware when `compute` is torch's or cupy's)."""
    a, b, pattern = inputs(n, words)
    want = expected(a, b, pattern)
    out = []
    for d in devices:
        try:
            out.append(judge(d, compute.matmul(d, a, b), compute.invert(d, pattern), want))
        except Exception as e:  # a device that throws has failed the test
            out.append(DeviceResult(d, False, f"the test did not complete: {e}"[:500]))
    return out


class TorchCompute:
    """torch.cuda (touches real GPUs)."""

    name = "torch"

    def __init__(self) -> None:
        self.torch = importlib.import_module("torch")
        # the answer must not depend on TF32 (it does not: module docstring); pin it anyway
        self.torch.backends.cuda.matmul.allow_tf32 = False

    def count(self) -> int:
        return int(self.torch.cuda.device_count()) if self.torch.cuda.is_available() else 0

    def matmul(self, device: int, a: Any, b: Any) -> Any:
        dev = f"cuda:{device}"
        out = self.torch.from_numpy(a).to(dev) @ self.torch.from_numpy(b).to(dev)
        self.torch.cuda.synchronize(dev)
        return out.cpu().numpy()

    def invert(self, device: int, words: Any) -> Any:
        dev = f"cuda:{device}"
        out = self.torch.bitwise_not(self.torch.from_numpy(words).to(dev))
        self.torch.cuda.synchronize(dev)
        return out.cpu().numpy()


class CupyCompute:
    """cupy (touches real GPUs; `corral.testing.fake_cupy` stands in for it in tests)."""

    name = "cupy"

    def __init__(self) -> None:
        self.cp = importlib.import_module("cupy")

    def count(self) -> int:
        return int(self.cp.cuda.runtime.getDeviceCount())

    def matmul(self, device: int, a: Any, b: Any) -> Any:
        with self.cp.cuda.Device(device):
            out = self.cp.matmul(self.cp.asarray(a), self.cp.asarray(b))
            self.cp.cuda.Device(device).synchronize()
            return self.cp.asnumpy(out)

    def invert(self, device: int, words: Any) -> Any:
        with self.cp.cuda.Device(device):
            out = self.cp.invert(self.cp.asarray(words))
            self.cp.cuda.Device(device).synchronize()
            return self.cp.asnumpy(out)


def available_library() -> str:
    """The library the test would use ("torch", "cupy"), "" with neither: found without
    importing either (importing torch takes seconds and the agent needs neither itself)."""
    return next((m for m in LIBRARIES if importlib.util.find_spec(m) is not None), "")


def _load_compute() -> tuple[Compute | None, str]:
    """The first library that sees a device, or None and why not."""
    why = []
    for name, make in (("torch", TorchCompute), ("cupy", CupyCompute)):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            compute: Compute = make()
            if compute.count() > 0:
                return compute, ""
            why.append(f"{name} sees no GPU")
        except Exception as e:  # a broken install: "unavailable", not a crash
            why.append(f"{name}: {e}"[:300])
    return None, NO_LIBRARY if not why else f"known-answer test unavailable ({'; '.join(why)})"


class KnownAnswerRun:
    """One run in a child process (module docstring): start, then `poll` until it answers.

    `poll` returns None while it runs, then the results by device, or a sentence saying why it
    could not run (the library is missing or sees no GPU, or it timed out and was killed: a
    timeout fails the devices it ran on, since a device that hangs on a 64 MiB copy is broken).
    """

    def __init__(self, devices: Sequence[int], now: float, timeout_s: float = 120.0,
                 env: dict[str, str] | None = None) -> None:
        self.devices, self.started, self.timeout_s = tuple(devices), now, timeout_s
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by poll or close
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral.agent.known_answer", "--devices",
             ",".join(map(str, self.devices))], stdout=self._out, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, env=env)

    def poll(self, now: float) -> list[DeviceResult] | str | None:
        code = self.proc.poll()
        if code is None:
            if now - self.started < self.timeout_s:
                return None
            self.proc.kill()
            self.proc.wait()
            return [DeviceResult(d, False, f"the test did not finish in {self.timeout_s:.0f} s")
                    for d in self.devices]
        self._out.seek(0)
        raw = self._out.read()
        self._out.close()
        try:
            answer = json.loads(raw)
            if answer.get("unavailable"):
                return str(answer["unavailable"])
            return [DeviceResult(int(r["device"]), bool(r["passed"]), str(r["evidence"]))
                    for r in answer["results"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            return f"known-answer test failed to report (exit {code}): {raw[-300:]!r}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="corral's known-answer test (module doc)")
    parser.add_argument("--devices", default="", help="indices, comma-separated (default all)")
    parser.add_argument("--matmul-n", type=int, default=MATMUL_N)
    parser.add_argument("--memory-words", type=int, default=MEMORY_WORDS)
    parser.add_argument("--no-dcgm", dest="dcgm", action="store_false",
                        help="skip DCGM's diagnostic even where dcgmi is installed")
    args = parser.parse_args(argv)
    compute, why = _load_compute()
    if compute is None:
        print(json.dumps({"unavailable": why}))
        return 0
    devices = ([int(x) for x in args.devices.split(",") if x.strip()] if args.devices
               else list(range(compute.count())))
    results = run_on_devices(compute, devices, args.matmul_n, args.memory_words)
    dcgm = dcgm_diag(devices) if args.dcgm else None
    if dcgm is not None:
        results = [_with_dcgm(r, dcgm.get(r.device, "")) for r in results]
    print(json.dumps({"library": compute.name, "pid": os.getpid(), "dcgm": dcgm is not None,
                      "results": [r.as_record() for r in results]}))
    return 0


def _with_dcgm(r: DeviceResult, failed: str) -> DeviceResult:
    if not failed:
        return r
    evidence = "; ".join(e for e in (r.evidence, f"DCGM diagnostic: {failed}") if e)
    return DeviceResult(r.device, False, evidence)


def dcgm_diag(devices: Sequence[int], timeout_s: float = 90.0) -> dict[int, str] | None:
    """NVIDIA DCGM's quick diagnostic (`dcgmi diag -r 1 -j`) where `dcgmi` is installed: what
    failed, by device; None without dcgmi (or when it does not answer in JSON). Real hardware;
    tested with a fake `dcgmi` on PATH."""
    if shutil.which("dcgmi") is None or not devices:
        return None
    try:
        done = subprocess.run(["dcgmi", "diag", "-r", "1", "-j", "-i",
                               ",".join(map(str, devices))], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        report = json.loads(done.stdout[done.stdout.find("{"):])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return dcgm_failures(report)


def dcgm_failures(report: dict[str, Any]) -> dict[int, str]:
    """Pure: the failed tests per GPU of a `dcgmi diag -j` report (DCGM 2-3's "DCGM GPU
    Diagnostic", DCGM 4's "DCGM Diagnostic": test_categories -> tests -> results with
    gpu_ids / gpu_id and status). Warnings and skips are not failures."""
    body = report.get("DCGM GPU Diagnostic") or report.get("DCGM Diagnostic") or {}
    out: dict[int, list[str]] = {}
    for category in body.get("test_categories", []):
        for test in category.get("tests", []):
            for result in test.get("results", []):
                if str(result.get("status", "")).upper() != "FAIL":
                    continue
                ids = str(result.get("gpu_ids", result.get("gpu_id", "")))
                why = result.get("warnings") or result.get("info") or ""
                text = f"{test.get('name', '?')} failed" + (f" ({_text(why)})" if why else "")
                for gpu in (int(x) for x in ids.split(",") if x.strip().isdigit()):
                    out.setdefault(gpu, []).append(text)
    return {gpu: "; ".join(texts)[:500] for gpu, texts in out.items()}


def _text(why: Any) -> str:
    if isinstance(why, list):
        return "; ".join(str(w.get("warning", w)) if isinstance(w, dict) else str(w)
                         for w in why)
    return str(why)


if __name__ == "__main__":
    raise SystemExit(main())
