"""Submissions while the scheduler runs: what the control loop costs the API (issue 14, 16).

`bench/api_submit.py` serves `corral up --no-scheduler`, so its figures are the API's alone.
This starts a real `corral up` WITH its scheduler on the default pool (2 virtual nodes x 4
GPUs), fills the pool with one 8-GPU gang that sleeps (so nothing else launches: every
submission waits and each loop step plans over the growing backlog), then submits `--jobs`
jobs from `--clients` clients (`api_submit.submit_load`). Prints one JSON line per run:
submissions/s, p50/p99 ms, the loop's cycles during the burst (`corral_schedule_cycles_total`
from /metrics) and the server's CPU seconds during it (/proc).

    .venv/bin/python bench/submit_with_loop.py [--jobs 4800] [--clients 16] [--runs 2]

To compare two codes, run each tree's copy through PYTHONPATH (its `src`), interleaved:

    for t in /tmp/old /tmp/new; do PYTHONPATH=$t/src python bench/submit_with_loop.py; done

The server runs `sys.executable -m corral.cli.main up` with this process's PYTHONPATH.
Figures: bench/README.md, "Submissions while the scheduler runs" (the arrival wake, 44f625e).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import httpx
from api_submit import _cpu_s, start_server, submit_load

BLOCKER = {"name": "blocker", "queue": "default", "gpus": 4, "workers": 2, "cpu": 0.1,
           "memory": 64, "command": ["sleep", "600"]}
CYCLES = re.compile(r"^corral_schedule_cycles_total\{[^}]*\} ([0-9.e+]+)", re.M)


def one_run(jobs: int, clients: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        proc, url, token = start_server(data_dir, None, scheduler=True)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            r = httpx.post(f"{url}/v1/workloads", headers=headers, json=BLOCKER)
            r.raise_for_status()
            time.sleep(3)  # the blocker placed and started: the pool is full

            def cycles() -> float:
                text = httpx.get(f"{url}/metrics", headers=headers).text
                return sum(float(v) for v in CYCLES.findall(text))

            c0, cpu0 = cycles(), _cpu_s(proc.pid) or 0.0
            figures = submit_load(url, token, jobs, clients)
            c1, cpu1 = cycles(), _cpu_s(proc.pid) or 0.0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {**figures, "loop_cycles": c1 - c0, "server_cpu_s": round(cpu1 - cpu0, 2),
            "load_1m": round(os.getloadavg()[0], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=4800)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    for _ in range(args.runs):
        print(json.dumps(one_run(args.jobs, args.clients)), flush=True)


if __name__ == "__main__":
    main()
