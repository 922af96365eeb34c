"""`scripts/gpu-check`: what a session with a real NVIDIA GPU runs to measure corral on it.

Three parts, printed as one JSON object on stdout (progress on stderr):

1. **nvml**: NVML's view (`corral.backends.nvml`): the GPUs found, one health probe's verdict
   and how long a probe takes (median of `--probes` checks, ms).
2. **known_answer**: the known-answer test (`corral.agent.known_answer`) on every GPU, in its
   child process as the agent runs it: per device passed / evidence, and the run's wall time.
   Without torch or cupy it says "known-answer test unavailable (no torch/cupy)".
3. **sharing**: two jobs of 0.5 GPU each through a real `corral up` (its pool found by NVML,
   fractional placement by the core): both must land on the same device and run at once. Each
   worker runs a matmul loop for `--seconds` (torch on CUDA when importable, else numpy on the
   CPU, and says which) and writes what it saw: CUDA_VISIBLE_DEVICES, CORRAL_GPU_MILLI, its
   start and end, iterations/s and TFLOP/s. The script also asks NVML which processes use the
   device while they run (`nvmlDeviceGetComputeRunningProcesses`).

Exit status: 0 when all three ran and passed; 1 when something ran and failed; 2 when there is
no GPU here (NVML absent or no device): it says "no GPU" and why, and measures nothing.

Honesty: with `CORRAL_GPU_CHECK_FAKE=1` (tests, on `corral.testing.fake_pynvml` and
`corral.testing.fake_cupy`), the output carries `"fake": true`; figures from such a run are
not a GPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

NO_GPU_EXIT = 2

WORKER = textwrap.dedent("""
    import json, os, sys, time
    out, seconds, n = sys.argv[1], float(sys.argv[2]), 2048
    seen = {k: os.environ.get(k, "") for k in ("CUDA_VISIBLE_DEVICES", "CORRAL_GPU_MILLI",
                                               "CORRAL_WORKLOAD_ID")}
    seen["pid"], seen["start"] = os.getpid(), time.time()
    try:
        import torch
        assert torch.cuda.is_available()
        a = torch.randn(n, n, device="cuda"); b = torch.randn(n, n, device="cuda")
        step = lambda: a @ b
        sync = torch.cuda.synchronize
        seen["on"] = "cuda:" + torch.cuda.get_device_name(0)
    except Exception as e:
        import numpy as np
        n = 512
        a = np.random.rand(n, n).astype("float32"); b = np.random.rand(n, n).astype("float32")
        step, sync = (lambda: a @ b), (lambda: None)
        seen["on"] = f"cpu (no torch on CUDA: {type(e).__name__})"
    iterations, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        step(); iterations += 1
        if iterations % 16 == 0:
            sync()
    sync()
    elapsed = time.time() - t0
    seen.update(end=time.time(), iterations_per_s=iterations / elapsed,
                tflops=2 * n ** 3 * iterations / elapsed / 1e12, n=n)
    tmp = out + ".tmp"
    open(tmp, "w").write(json.dumps(seen)); os.rename(tmp, out)
""")


def log(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr, flush=True)


def nvml_part(probes: int) -> tuple[dict[str, Any], int]:
    """NVML's view and a probe's cost; (part, number of GPUs)."""
    from corral.backends.health import node_verdict
    from corral.backends.nvml import NvmlHealthProbe, load_nvml, local_gpus

    nvml, why = load_nvml()
    if nvml is None:
        return {"available": False, "reason": why}, 0
    nvml.nvmlShutdown()
    gpus = local_gpus()
    if not gpus:
        return {"available": True, "gpus": [], "reason": "NVML found no GPU"}, 0
    times = []
    with NvmlHealthProbe() as probe:
        for _ in range(max(1, probes)):
            t0 = time.perf_counter()
            devices = probe.check(time.time())
            times.append((time.perf_counter() - t0) * 1000)
        verdict = node_verdict(devices, expected_devices=len(gpus))
    return {"available": True,
            "gpus": [{"index": g.index, "name": g.name, "memory_mib": g.memory_mib}
                     for g in gpus],
            "verdict": {"health": str(verdict.health), "reason": verdict.reason,
                        "checks": [c.as_record() for c in verdict.checks]},
            "probe_ms_median": round(statistics.median(times), 3),
            "probe_ms_max": round(max(times), 3), "probes": len(times)}, len(gpus)


def known_answer_part(gpus: int) -> dict[str, Any]:
    from corral.agent.known_answer import KnownAnswerRun

    t0 = time.monotonic()
    run = KnownAnswerRun(list(range(gpus)), now=0.0, timeout_s=300.0)
    run.proc.wait(timeout=320)
    answer = run.poll(time.monotonic() - t0)
    run.close()
    wall = round(time.monotonic() - t0, 3)
    if isinstance(answer, str) or answer is None:
        return {"ran": False, "reason": answer or "no answer", "wall_s": wall}
    return {"ran": True, "wall_s": wall, "results": [r.as_record() for r in answer],
            "passed": all(r.passed for r in answer)}


def sharing_part(seconds: float, workdir: Path) -> dict[str, Any]:
    """Two 0.5-GPU jobs through a real corral up; where they landed and what they measured."""
    from corral.testing.corral_up import CorralServer

    script = workdir / "share_worker.py"
    script.write_text(WORKER)
    server = CorralServer(workdir / "corral", cwd=workdir)
    server.start("--gpu-probe-interval", "0")
    try:
        with server.client() as c:
            ids = [c.submit({"name": f"share-{i}", "queue": "default", "gpus": 0.5,
                             "cpu": 0.5, "memory": 512, "command": [
                                 sys.executable, str(script), str(workdir / f"share-{i}.json"),
                                 str(seconds)]}).group_id for i in range(2)]
            users = _device_processes(seconds)
            placed = {wid: [p.model_dump(mode="json") for p in c.get(wid).placements]
                      for wid in ids}
            ends = {wid: c.wait(wid, timeout_s=seconds + 120).state for wid in ids}
    finally:
        server.stop()
        server.stop_workers()
    seen = [json.loads((workdir / f"share-{i}.json").read_text())
            if (workdir / f"share-{i}.json").exists() else {} for i in range(2)]
    overlap = (min(s.get("end", 0) for s in seen) - max(s.get("start", 0) for s in seen)
               if all(seen) else 0.0)
    same = bool(all(seen)) and len({s["CUDA_VISIBLE_DEVICES"] for s in seen}) == 1
    return {"states": ends, "workers": seen, "same_device": same,
            "overlap_s": round(overlap, 3), "nvml_processes_on_device": users,
            "placements": placed,
            "passed": all(v == "succeeded" for v in ends.values()) and same and overlap > 0}


def _device_processes(seconds: float) -> dict[str, Any]:
    """The pids NVML says use each GPU, sampled while the jobs run."""
    from corral.backends.nvml import load_nvml

    nvml, why = load_nvml()
    if nvml is None:
        return {"error": why}
    seen: dict[str, set[int]] = {}
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                query = getattr(nvml, "nvmlDeviceGetComputeRunningProcesses", None)
                if query is None:
                    return {"error": "nvmlDeviceGetComputeRunningProcesses not available"}
                seen.setdefault(str(i), set()).update(p.pid for p in query(handle))
            time.sleep(0.5)
    except Exception as e:  # a figure missing, not a failed check
        return {"error": str(e)}
    finally:
        nvml.nvmlShutdown()
    return {device: sorted(pids) for device, pids in seen.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20, help="NVML checks to time")
    parser.add_argument("--seconds", type=float, default=10.0, help="each sharing job's run")
    parser.add_argument("--skip-sharing", action="store_true")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"fake": os.environ.get("CORRAL_GPU_CHECK_FAKE") == "1",
                           "host": os.uname().nodename}
    nvml, gpus = nvml_part(args.probes)
    out["nvml"] = nvml
    if not gpus:
        log(f"no GPU: {nvml.get('reason', 'NVML found no GPU')}; nothing measured")
        out["no_gpu"] = True
        print(json.dumps(out, indent=2))
        return NO_GPU_EXIT
    log(f"{gpus} GPU(s): {[g['name'] for g in nvml['gpus']]}; known-answer test next")
    out["known_answer"] = known_answer_part(gpus)
    if not args.skip_sharing:
        log("two 0.5-GPU jobs through corral up")
        with tempfile.TemporaryDirectory(prefix="corral-gpu-check-") as tmp:
            out["sharing"] = sharing_part(args.seconds, Path(tmp))
    passed = (nvml["verdict"]["health"] == "healthy"
              and out["known_answer"].get("passed", False)
              and out.get("sharing", {"passed": True})["passed"])
    out["passed"] = passed
    print(json.dumps(out, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
