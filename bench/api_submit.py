"""API benchmark: submissions/s and latency with concurrent clients, and listing with 100k rows.

For each store (SQLite in a temp dir; PostgreSQL from Debian's binaries when installed) it starts
a real `corral up --no-scheduler` (one uvicorn process, the API only, so the figures are the
API's and the store's), then:

1. `--clients` threads (default 16), each with its own HTTP connection, submit `--submissions`
   jobs in total; reports submissions/s and p50/p99 latency per request;
2. inserts rows directly until the store holds 100,000 workloads, then times
   `GET /v1/workloads?limit=100` (the first page, the common case) `--list-repeats` times.

Prints a table, and as its last line a JSON object keyed by store, each with
`submissions_per_second`, `p50_ms`, `p99_ms` and `list_100k_ms` (median).

    .venv/bin/python bench/api_submit.py [--submissions 4000] [--clients 16] [--only sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from corral.store import Store
from corral.store import workloads as W
from corral.store.database import sqlite_url

ROWS = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, db: str | None) -> tuple[subprocess.Popen[bytes], str, str]:
    port = _free_port()
    args = [sys.executable, "-m", "corral.cli.main", "up", "--no-scheduler", "--data-dir",
            str(data_dir), "--port", str(port)]
    if db:
        args += ["--db", db]
    log = open(os.environ.get("CORRAL_BENCH_LOG", os.devnull), "ab")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v1/health").status_code == 200 and (data_dir / "admin-token").exists():
                return proc, url, (data_dir / "admin-token").read_text().strip()
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("corral up did not start")


def submit_load(url: str, token: str, total: int, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = total // clients
    spec = {"name": "bench", "queue": "default", "gpus": 1, "cpu": 0.1,
            "command": ["python", "-c", "pass"]}

    def run() -> None:
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(per_client):
                t = time.perf_counter()
                r = c.post("/v1/workloads", json=spec)
                mine.append(time.perf_counter() - t)
                r.raise_for_status()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"submissions_per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)}


def fill(store_url: str, rows: int) -> None:
    store = Store(store_url)
    with store.read() as c:
        have = sum(W.count_by_state(c).values())
    batch = []
    spec = {"name": "filler", "queue": "default", "gpus": 1, "command": ["true"]}
    for i in range(have, rows):
        batch.append({"id": f"filler-{i:06d}", "group_id": f"filler-{i:06d}", "name": "filler",
                      "queue": "default", "user": "admin", "kind": "job", "spec": spec,
                      "state": ("succeeded", "pending", "running")[i % 3], "submitted_at": i})
        if len(batch) == 5000:
            with store.write() as c:
                W.insert_workloads(c, batch)
            batch = []
    if batch:
        with store.write() as c:
            W.insert_workloads(c, batch)
    store.close()


def list_latency(url: str, token: str, repeats: int) -> float:
    times = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        c.get("/v1/workloads?limit=100").raise_for_status()  # warm
        for _ in range(repeats):
            t = time.perf_counter()
            r = c.get("/v1/workloads?limit=100")
            times.append(time.perf_counter() - t)
            r.raise_for_status()
    return round(statistics.median(times) * 1000, 2)


def bench_store(name: str, db: str | None, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"corral-bench-{name}-") as tmp:
        data = Path(tmp)
        proc, url, token = start_server(data, db)
        try:
            result = submit_load(url, token, args.submissions, args.clients)
            fill(db or sqlite_url(data / "corral.db"), ROWS)
            result["list_100k_ms"] = list_latency(url, token, args.list_repeats)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=4000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--list-repeats", type=int, default=50)
    p.add_argument("--only", choices=["sqlite", "postgres"])
    args = p.parse_args()
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        if args.only in (None, "sqlite"):
            results["sqlite"] = bench_store("sqlite", None, args)
        if args.only in (None, "postgres"):
            try:
                from corral.testing.postgres import PostgresServer

                pg = stack.enter_context(PostgresServer())
                results["postgres"] = bench_store("postgres", pg.url, args)
            except Exception as e:  # no PostgreSQL binaries here: report and go on
                print(f"postgres skipped: {e}", file=sys.stderr)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
          f"; {args.clients} clients, {args.submissions} submissions")
    for store, r in results.items():
        print(f"{store:>9}: {r['submissions_per_second']:>8.1f} submissions/s  p50 {r['p50_ms']:.1f} ms"
              f"  p99 {r['p99_ms']:.1f} ms  list(100k) {r['list_100k_ms']:.1f} ms")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
