"""How long `corral exec` takes on Slurm (a step inside the worker's job: `srun --jobid
--overlap`, then `worker_step` on the node) vs on the local backend (issue 13).

Starts a real `corral up` on the local backend and one with `--backend slurm` on the test
harness's Slurm (slurmctld + 3 slurmd on this machine; root and slurm-wlm needed), one
sleeping worker each (on Slurm a one-GPU worker, in a warm-slot pilot by default), then times
N `POST /v1/workloads/{id}/exec` of `true` back to back after 2 warm-up calls, and prints the
median and p90 of each and their ratio. Both in one run, so the ratio holds under the load.

    .venv/bin/python bench/slurm_exec.py [N]        # N = 20 by default
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from corral.testing.corral_up import CorralServer, stop_workers
from corral.testing.slurm import MARKER_ENV, SlurmCluster


def _running(srv: CorralServer, gpus: int) -> str:
    with srv.client() as c:
        wid = c.submit({"name": "sleeper", "queue": "default", "cpu": 0.1, "memory": 64,
                        "gpus": gpus, "command": ["sleep", "600"]}).workloads[0].id
        deadline = time.monotonic() + 120
        while c.get(wid).state != "running":
            if time.monotonic() > deadline:
                raise SystemExit(f"{wid} did not start: {srv.log()}")
            time.sleep(0.2)
    return wid


def _times(srv: CorralServer, wid: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {srv.token}"}
    out = []
    with httpx.Client(base_url=srv.url, headers=headers, timeout=60) as c:
        deadline = time.monotonic() + 60  # running, then its runner has started the command
        while c.post(f"/v1/workloads/{wid}/exec", json={"argv": ["true"]}).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"exec in {wid} never answered")
            time.sleep(0.2)
        for i in range(n + 2):
            t = time.perf_counter()
            r = c.post(f"/v1/workloads/{wid}/exec", json={"argv": ["true"]})
            if r.status_code != 200 or r.json()["exit_code"] != 0:
                raise SystemExit(f"exec failed: {r.status_code} {r.text}")
            if i >= 2:  # warm-up calls not counted
                out.append(time.perf_counter() - t)
    return out


def _stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[int(0.9 * (len(xs) - 1))] * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-exec-"))
    print(f"execs per backend: {n} (after 2 warm-up); load before: "
          f"{os.getloadavg()[0]:.2f}")
    local = CorralServer(root / "local").start()
    try:
        on_local = _times(local, _running(local, 0), n)
    finally:
        local.stop()
        stop_workers(local.data_dir)
    with SlurmCluster() as cluster:
        env = cluster.env
        slurm = CorralServer(root / "slurm", extra_env={"SLURM_CONF": env["SLURM_CONF"],
                                                        MARKER_ENV: env[MARKER_ENV]})
        slurm.start("--backend", "slurm", timeout=180)
        try:
            on_slurm = _times(slurm, _running(slurm, 1), n)
        finally:
            slurm.stop()
            cluster.cancel_all_jobs()
    (lm, l90), (sm, s90) = _stats(on_local), _stats(on_slurm)
    print(f"local  exec median / p90: {lm:.1f} / {l90:.1f} ms")
    print(f"slurm  exec median / p90: {sm:.1f} / {s90:.1f} ms  ({sm / lm:.1f}x local)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
