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
                                         [--baseline]

`--baseline` also times a no-op FastAPI endpoint (same uvicorn settings, same clients, no auth,
no store): the most this process model can do on the machine, whatever corral does.

`--pool-nodes N` serves a generated pool of N nodes (four kinds of 8- and 4-GPU nodes) instead
of the default one, and `--shapes K` (with it, say `--pool-nodes 10000 --shapes 2000`) adds a
mixed run beside the single-shape one: each submission a shape of K (GPUs 1/2/4/8, a CPU ask
of K/4 values, a GPU model or none), so the "can this ever fit" check meets thousands of new
shapes; its figures are keyed `mixed_*`.

`--clients 4,16,64` submits again at each concurrency (on one server per store, one after the
other); the first count's figures are keyed as before, every count's under `by_clients`, with
`--baseline` the no-op's at the same counts and each store's rate as a share of it (`of_noop`).
`--no-list` leaves out the 100,000-row fill and the list timing (a sweep of concurrencies).

`--paired` (issue 14) times each store and the no-op in alternating bursts
(`--bursts`, in ABBA order: store, no-op, no-op, store, ...) with both servers up, so that the
two meet the same load on a shared machine: the store's rate as a share of the no-op's
(`paired.of_noop`) is then the figure that holds, where the runs one after the other saw the
no-op move between 640 and 3,100 requests/s with the load. Each burst opens its clients'
connections anew (as the first run does). Figures keyed `paired`.

`--replicas N` (PostgreSQL, the scale-out path: docs/howto/postgres-replicas.md) then starts
N - 1 more API-only processes on the same database and submits again with the clients spread
over all N (client i to replica i mod N), in the same run: figures keyed `replicas_N_*`.
"""

from __future__ import annotations

import argparse
import http.client
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
from urllib.parse import urlsplit

import httpx

from corral.store import Store
from corral.store import workloads as W
from corral.store.database import sqlite_url

ROWS = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MODELS = ("H100", "A100", "L40S", "H200")


def write_pool(path: Path, nodes: int) -> None:
    """A pool of `nodes` nodes in four groups (one per model) and the `default` queue."""
    import yaml

    groups = [{"name": f"g-{m.lower()}", "count": max(1, nodes // len(MODELS)), "gpu_model": m,
               "gpus": 4 if m == "L40S" else 8, "gpu_memory": "80GiB", "cpu": 96,
               "memory": "1TiB", "price_per_gpu_hour": 1.0 + i} for i, m in enumerate(MODELS)]
    path.write_text(yaml.safe_dump({
        "providers": [{"name": "bench", "capacity_kind": "on-demand", "node_groups": groups}],
        "queues": [{"name": "default", "quota_gpus": nodes * 8}]}))


def shape_bodies(shapes: int) -> list[bytes]:
    """`shapes` distinct submissions: GPUs x CPU ask x GPU model (or none)."""
    out = []
    for i in range(shapes):
        body: dict[str, Any] = {"name": "mix", "queue": "default", "gpus": (1, 2, 4, 8)[i % 4],
                                "cpu": f"{100 + (i // 4) % max(1, shapes // 4) * 10}m",
                                "command": ["python", "-c", "pass"]}
        if i % 3:
            body["gpu_models"] = [MODELS[i % len(MODELS)]]
        out.append(json.dumps(body).encode())
    return out


def start_server(data_dir: Path, db: str | None, pool: Path | None = None, *,
                 first: bool = True, scheduler: bool = False,
                 ) -> tuple[subprocess.Popen[bytes], str, str]:
    """first: this server creates the admin (its token file is waited for and a bench token
    made); another replica on the same database finds the admin there: health is enough.
    scheduler: run the control loop too (bench/submit_with_loop.py); the API alone else."""
    port = _free_port()
    args = [sys.executable, "-m", "corral.cli.main", "up", "--data-dir", str(data_dir),
            "--port", str(port)] + ([] if scheduler else ["--no-scheduler"])
    if db:
        args += ["--db", db]
    if pool is not None:
        args += ["--pool", str(pool)]
    log = open(os.environ.get("CORRAL_BENCH_LOG", os.devnull), "ab")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v1/health").status_code == 200 and not first:
                return proc, url, ""
            if httpx.get(f"{url}/v1/health").status_code == 200 and (data_dir / "admin-token").exists():
                return proc, url, bench_token(url, (data_dir / "admin-token").read_text())
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("corral up did not start")


def bench_token(url: str, admin_token: str) -> str:
    """An admin token without a request rate limit (the server's default is 50 requests/s per
    token, `corral.api.limits`): the figures are the API's throughput, not the limit's."""
    r = httpx.post(f"{url}/v1/tokens", json={"name": "bench", "rate_per_s": 0},
                   headers={"Authorization": f"Bearer {admin_token.strip()}"})
    r.raise_for_status()
    return str(r.json()["token"])


def submit_load(url: str | list[str], token: str, total: int, clients: int,
                bodies: list[bytes] | None = None) -> dict[str, float]:
    """`clients` threads, each with its own keep-alive connection, submit `total` jobs.

    The client is the standard library's http.client, not httpx: the load generator shares the
    machine's cores with the server, and httpx spends about 0.9 ms of CPU per request (as much as
    the server's whole submit path), so with it the benchmark measured mostly its own client."""
    latencies, elapsed = drive(url, token, total, clients, bodies)
    return summary(latencies, elapsed)


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {"submissions_per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)}


def drive(url: str | list[str], token: str, total: int, clients: int,
          bodies: list[bytes] | None = None) -> tuple[list[float], float]:
    """`submit_load`'s run: every request's latency (s) and the run's wall time (s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = total // clients
    body = json.dumps({"name": "bench", "queue": "default", "gpus": 1, "cpu": 0.1,
                       "command": ["python", "-c", "pass"]}).encode()
    each = bodies or [body]
    counter = iter(range(10**9))  # the next body, shared by the clients (next() is atomic)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    urls = [url] if isinstance(url, str) else url

    def run(i: int) -> None:
        mine = []
        where = urlsplit(urls[i % len(urls)])
        conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port)
        try:
            for _ in range(per_client):
                t = time.perf_counter()
                conn.request("POST", "/v1/workloads", each[next(counter) % len(each)], headers)
                resp = conn.getresponse()
                data = resp.read()
                mine.append(time.perf_counter() - t)
                if resp.status != 201:
                    raise RuntimeError(f"submit answered {resp.status}: {data[:300]!r}")
        finally:
            conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    if len(latencies) != per_client * clients:
        raise RuntimeError("a client failed; see the error above")
    return latencies, elapsed


def serve_noop(port: int) -> None:
    """The ceiling: FastAPI + uvicorn, same settings as `corral up`, no middleware, and a submit
    endpoint that parses the JSON body and answers 201 with a constant. No auth, no store."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/workloads", status_code=201)
    async def submit(body: dict[str, Any]) -> dict[str, str]:
        return {"group_id": str(body.get("name"))}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bench_noop(args: argparse.Namespace) -> dict[int, dict[str, float]]:
    proc, url = start_noop(args.clients[0])
    try:
        return {c: _with_cpu(proc.pid, lambda c=c: submit_load(url, "-", args.submissions, c),
                             args.submissions // c * c) for c in args.clients}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def start_noop(clients: int) -> tuple[subprocess.Popen[bytes], str]:
    """The no-op server in its own process, up and warmed."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-noop", str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/v1/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    submit_load(url, "-", 160, clients)  # warm
    return proc, url


def paired(store: tuple[int, str, str], noop: tuple[int, str], args: argparse.Namespace
           ) -> dict[str, Any]:
    """The store's server and the no-op's in alternating bursts, ABBA (store, no-op, no-op,
    store, ...): each meets the same load, so the share holds where runs minutes apart do
    not. Rates are requests over the bursts' summed wall time; CPU per request is each
    server's own over its bursts."""
    (pid, url, token), (noop_pid, noop_url) = store, noop
    clients, bursts = args.clients[0], max(2, args.bursts)
    each = max(clients, args.submissions // bursts // clients * clients)
    runs: dict[str, list[Any]] = {"store": [[], 0.0, 0.0], "noop": [[], 0.0, 0.0]}
    targets = {"store": (pid, url, token), "noop": (noop_pid, noop_url, "-")}
    for i in range(bursts):
        name = ("store", "noop")[(i + i // 2) % 2]  # store, noop, noop, store, store, noop, ...
        where, at, key = targets[name]
        before = _cpu_s(where) or 0.0
        latencies, elapsed = drive(at, key, each, clients)
        runs[name][0] += latencies
        runs[name][1] += elapsed
        runs[name][2] += (_cpu_s(where) or 0.0) - before
    out: dict[str, Any] = {}
    for name, (latencies, elapsed, cpu) in runs.items():
        out[name] = {**summary(latencies, elapsed),
                     "server_cpu_ms": round(cpu * 1000 / len(latencies), 3)}
    out["of_noop"] = round(out["store"]["submissions_per_second"]
                           / out["noop"]["submissions_per_second"], 3)
    out["bursts"], out["per_burst"] = bursts, each
    return out


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
        pool = None
        if args.pool_nodes:
            pool = data / "pool.yaml"
            write_pool(pool, args.pool_nodes)
        proc, url, token = start_server(data, db, pool)
        try:
            submit_load(url, token, 160, args.clients[0])  # warm, as the no-op is
            swept = {c: _with_cpu(proc.pid, lambda c=c: submit_load(url, token, args.submissions, c),
                                  args.submissions // c * c) for c in args.clients}
            result: dict[str, Any] = {**swept[args.clients[0]], "by_clients": swept}
            if args.paired:
                noop_proc, noop_url = start_noop(args.clients[0])
                try:
                    result["paired"] = paired((proc.pid, url, token), (noop_proc.pid, noop_url),
                                              args)
                finally:
                    noop_proc.send_signal(signal.SIGINT)
                    noop_proc.wait(timeout=30)
            if args.shapes:
                mixed = submit_load(url, token, args.submissions, args.clients[0],
                                    shape_bodies(args.shapes))
                result.update({f"mixed_{k}": v for k, v in mixed.items()})
                result["shapes"], result["pool_nodes"] = args.shapes, args.pool_nodes
            if db is not None and args.replicas > 1:
                result.update(_replicas(data, db, pool, url, token, args))
            if not args.no_list:
                fill(db or sqlite_url(data / "corral.db"), ROWS)
                result["list_100k_ms"] = list_latency(url, token, args.list_repeats)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return result


def _cpu_s(pid: int) -> float | None:
    """utime + stime of a process (Linux's /proc), in seconds; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_cpu(pid: int, run: Any, requests: int) -> dict[str, float]:
    """`run()`'s figures and the server's CPU per request (ms): what a loaded machine moves
    least, where requests/s move with the other processes on the cores."""
    before = _cpu_s(pid)
    figures: dict[str, float] = run()
    after = _cpu_s(pid)
    if before is not None and after is not None:
        figures["server_cpu_ms"] = round((after - before) * 1000 / requests, 3)
    return figures


def _replicas(data: Path, db: str, pool: Path | None, url: str, token: str,
              args: argparse.Namespace) -> dict[str, Any]:
    """The same load spread over `args.replicas` API processes on one database."""
    procs, urls = [], [url]
    try:
        for i in range(1, args.replicas):
            replica_dir = data / f"replica-{i}"
            replica_dir.mkdir()
            proc, replica_url, _ = start_server(replica_dir, db, pool, first=False)
            procs.append(proc)
            urls.append(replica_url)
        spread = submit_load(urls, token, args.submissions, args.clients[0])
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return {f"replicas_{args.replicas}_{k}": v for k, v in spread.items()}


def _counts(text: str) -> list[int]:
    return [int(c) for c in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=4000)
    p.add_argument("--clients", type=_counts, default=[16],
                   help="client threads; a comma list (4,16,64) sweeps them")
    p.add_argument("--no-list", action="store_true", help="skip the 100k-row list timing")
    p.add_argument("--list-repeats", type=int, default=50)
    p.add_argument("--only", choices=["sqlite", "postgres"])
    p.add_argument("--pool-nodes", type=int, default=0, help="serve a generated pool this large")
    p.add_argument("--shapes", type=int, default=0,
                   help="also submit a mix of this many distinct shapes (mixed_* figures)")
    p.add_argument("--baseline", action="store_true",
                   help="also time a no-op FastAPI endpoint with the same clients (the ceiling)")
    p.add_argument("--paired", action="store_true",
                   help="also time each store and the no-op in alternating "
                        "bursts, so both meet the same load (paired.*)")
    p.add_argument("--bursts", type=int, default=8, help="--paired: bursts in all (ABBA)")
    p.add_argument("--replicas", type=int, default=1,
                   help="PostgreSQL: also submit over this many API replicas on one database")
    p.add_argument("--serve-noop", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_noop:
        serve_noop(args.serve_noop)
        return
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
          f"; {args.submissions} submissions per run; load average {os.getloadavg()[0]:.1f}")
    noop = bench_noop(args) if args.baseline else {}
    for c in args.clients:
        print(f"{c} clients:")
        if c in noop:
            b = noop[c]
            print(f"{'no-op':>9}: {b['submissions_per_second']:>8.1f} requests/s     p50 "
                  f"{b['p50_ms']:.1f} ms  p99 {b['p99_ms']:.1f} ms  server CPU "
                  f"{b.get('server_cpu_ms', 0):.3f} ms (FastAPI + uvicorn ceiling)")
        for store, r in results.items():
            f = r["by_clients"][c]
            if c in noop:
                f["of_noop"] = round(f["submissions_per_second"]
                                     / noop[c]["submissions_per_second"], 3)
            share = f"  {f['of_noop']:.0%} of the no-op" if "of_noop" in f else ""
            print(f"{store:>9}: {f['submissions_per_second']:>8.1f} submissions/s  p50 "
                  f"{f['p50_ms']:.1f} ms  p99 {f['p99_ms']:.1f} ms  server CPU "
                  f"{f.get('server_cpu_ms', 0):.3f} ms{share}")
    for store, r in results.items():
        if "paired" in r:
            pr = r["paired"]
            for name in ("noop", "store"):
                f = pr[name]
                print(f"{('no-op' if name == 'noop' else store) + ' (paired)':>17}: "
                      f"{f['submissions_per_second']:>8.1f}/s  p50 {f['p50_ms']:.1f} ms  "
                      f"p99 {f['p99_ms']:.1f} ms  server CPU {f['server_cpu_ms']:.3f} ms")
            print(f"{'':>17}  {store} {pr['of_noop']:.0%} of the no-op in the same bursts "
                  f"({pr['bursts']} bursts of {pr['per_burst']}, ABBA)")
        if "list_100k_ms" in r:
            print(f"{store:>9}: list(100k) {r['list_100k_ms']:.1f} ms")
        if f"replicas_{args.replicas}_submissions_per_second" in r:
            k = f"replicas_{args.replicas}_"
            print(f"{'x' + str(args.replicas):>9}: {r[k + 'submissions_per_second']:>8.1f} "
                  f"submissions/s  p50 {r[k + 'p50_ms']:.1f} ms  p99 {r[k + 'p99_ms']:.1f} ms  "
                  f"({args.replicas} API replicas, one database)")
        if "mixed_submissions_per_second" in r:
            print(f"{'mixed':>9}: {r['mixed_submissions_per_second']:>8.1f} submissions/s  "
                  f"p50 {r['mixed_p50_ms']:.1f} ms  p99 {r['mixed_p99_ms']:.1f} ms  "
                  f"({r['shapes']} shapes, {r['pool_nodes']} nodes)")
    if noop:
        results["noop"] = {"by_clients": noop}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
