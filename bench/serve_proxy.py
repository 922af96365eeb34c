"""The serving gateway's overhead: latency through the gateway against calling a replica
directly, side by side, at a few concurrency levels, in one run.

    python bench/serve_proxy.py [--replicas 2] [--concurrency 1,8,32] [--requests 400]
                                [--tokens 16] [--token-delay 0] [--json OUT]

Starts --replicas example model servers (examples/serve/model_server.py) and the gateway
(`python -m corral.gateway` over a route file naming them, every replica ready) as real
processes on this machine, then, per concurrency level C, runs a closed loop of C clients
(httpx, one event loop, each client its own connection pool) that sends --requests requests:

- json: POST /v1/completions (--tokens tokens, --token-delay seconds each), whole response;
- sse:  the same with "stream": true; latency is the time to the first token's event.

Direct calls spread over the replicas round-robin (the best a client can do without the
gateway); gateway calls go to /serve/toy/... and the gateway balances. The direct and gateway
rounds alternate in slices of --slice requests so that drift in the machine's load falls on
both alike. Overhead = gateway percentile - direct percentile. Errors are any response that is
not a 200 or a stream that does not end with [DONE] (dropped requests: must be 0).

Latency on a shared machine is mostly time spent waiting for a CPU, so each line also gives the
CPU time the gateway process used per request it proxied (and the replicas' CPU per request,
for scale), read from /proc around the gateway slices: the gateway's own cost, whatever the load.

Prints one line per mode and level, then, as its last line, a JSON object with every figure.
Latencies come from time.perf_counter in the load generator, which shares the machine's CPUs
with the replicas and the gateway: read them with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# the load generator uses httpx too: the same guard as corral.gateway.app (httpcore's failed
# `import sniffio` on every request costs a sys.path scan, on the direct and gateway sides alike)
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "examples" / "serve" / "model_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} never answered")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(client: httpx.AsyncClient, url: str, mode: str, body: dict[str, Any]) -> \
        tuple[float, str]:
    """(seconds to the measured point, "" when the request succeeded whole, else why not)."""
    t0 = time.perf_counter()
    if mode == "json":
        r = await client.post(url, json=body)
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            return elapsed, f"HTTP {r.status_code}: {r.text[:200]}"
        return elapsed, "" if len(r.json()["choices"]) == 1 else "no choices"
    async with client.stream("POST", url, json=body) as r:
        data, first = b"", None
        async for chunk in r.aiter_raw():
            if first is None:
                first = time.perf_counter() - t0
            data += chunk
    elapsed = first if first is not None else time.perf_counter() - t0
    if r.status_code != 200:
        return elapsed, f"HTTP {r.status_code}: {data[:200]!r}"
    return elapsed, "" if data.endswith(b"data: [DONE]\n\n") else "stream without [DONE]"


async def round_(urls: list[str], concurrency: int, count: int, mode: str,
                 body: dict[str, Any], clients: list[httpx.AsyncClient]) -> \
        tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    next_i = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_i
        while next_i < count:
            i, next_i = next_i, next_i + 1
            try:
                elapsed, why = await one(client, urls[i % len(urls)], mode, body)
            except httpx.HTTPError as exc:
                elapsed, why = 0.0, f"{type(exc).__name__}: {exc}"
            if why:
                errors.append(why)
            else:
                latencies.append(elapsed)

    await asyncio.gather(*(worker(c) for c in clients[:concurrency]))
    return latencies, errors


async def measure(direct: list[str], via: list[str], levels: list[int], requests: int,
                  slice_: int, modes: list[str], tokens: int,
                  pids: dict[str, list[int]]) -> list[dict[str, Any]]:
    rows = []
    # idle connections are dropped before the servers' own 5 s keep-alive timeout (uvicorn's):
    # else a request sent as the server closes one fails on the client side, not the gateway's
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2)
    clients = [httpx.AsyncClient(timeout=60, limits=limits) for _ in range(max(levels))]
    try:
        for mode in modes:
            body = {"prompt": "the quick brown fox", "max_tokens": tokens,
                    "stream": mode == "sse"}
            for c in levels:
                await round_(direct, c, 2 * c, mode, body, clients)  # warm connections
                await round_(via, c, 2 * c, mode, body, clients)
                got: dict[str, list[float]] = {"direct": [], "gateway": []}
                errs: dict[str, list[str]] = {"direct": [], "gateway": []}
                cpu = {"gateway": 0.0, "replicas": 0.0}
                done = 0
                while done < requests:
                    n = min(slice_, requests - done)
                    for name, urls in (("direct", direct), ("gateway", via)):
                        before = {k: cpu_seconds(v) for k, v in pids.items()}
                        lat, e = await round_(urls, c, n, mode, body, clients)
                        if name == "gateway":
                            for k, v in pids.items():
                                cpu[k] += cpu_seconds(v) - before[k]
                        got[name] += lat
                        errs[name] += e
                    done += n
                rows.append(row(mode, c, got, errs))
                # CPU per request through the gateway: the gateway's own cost, whatever the
                # load of the machine (latency under a loaded machine is mostly waiting for CPU)
                n_via = max(1, len(got["gateway"]) + len(errs["gateway"]))
                rows[-1]["gateway_cpu_ms_per_request"] = round(1000 * cpu["gateway"] / n_via, 3)
                rows[-1]["replicas_cpu_ms_per_request"] = round(1000 * cpu["replicas"] / n_via,
                                                                3)
                print(line(rows[-1]), flush=True)
    finally:
        for client in clients:
            await client.aclose()
    return rows


def row(mode: str, c: int, got: dict[str, list[float]],
        errs: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode, "concurrency": c}
    for name, lat in got.items():
        out[name] = {"n": len(lat), "errors": len(errs[name]), "why": sorted(set(errs[name])),
                     "p50_ms": round(1000 * statistics.median(lat), 3) if lat else None,
                     "p99_ms": round(1000 * percentile(lat, 0.99), 3) if lat else None}
    if got["direct"] and got["gateway"]:
        out["overhead_p50_ms"] = round(out["gateway"]["p50_ms"] - out["direct"]["p50_ms"], 3)
        out["overhead_p99_ms"] = round(out["gateway"]["p99_ms"] - out["direct"]["p99_ms"], 3)
    return out


def line(r: dict[str, Any]) -> str:
    d, g = r["direct"], r["gateway"]
    what = "whole response" if r["mode"] == "json" else "first token"
    return (f"{r['mode']} ({what}) concurrency {r['concurrency']}: "
            f"direct p50 {d['p50_ms']} ms p99 {d['p99_ms']} ms | "
            f"gateway p50 {g['p50_ms']} ms p99 {g['p99_ms']} ms | "
            f"overhead p50 {r.get('overhead_p50_ms')} ms p99 {r.get('overhead_p99_ms')} ms | "
            f"requests {d['n']}+{g['n']} errors {d['errors']}+{g['errors']} | "
            f"CPU ms/request: gateway {r.get('gateway_cpu_ms_per_request')}, replicas "
            f"{r.get('replicas_cpu_ms_per_request')} | "
            + "".join(f"{side} error: {why} | " for side in ("direct", "gateway")
                      for why in r[side]["why"]) +
            f"load {os.getloadavg()[0]:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--requests", type=int, default=400, help="per side, mode and level")
    p.add_argument("--slice", type=int, default=50, help="requests per alternating slice")
    p.add_argument("--modes", default="json,sse")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--token-delay", type=float, default=0.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    if not levels or min(levels) < 1 or not set(modes) <= {"json", "sse"} or not modes:
        raise SystemExit("--concurrency takes positive integers (1,8,32); --modes json,sse")

    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port() for _ in range(args.replicas)]
        for i, port in enumerate(ports):
            procs.append(start([sys.executable, str(SERVER), "--port", str(port),
                                "--replica-id", f"r{i}", "--token-delay",
                                str(args.token_delay)]))
        direct = [f"http://127.0.0.1:{port}" for port in ports]
        for url, proc in zip(direct, procs, strict=True):
            wait_up(url + "/healthz", proc)
        routes = {"services": {"toy": {"replicas": {f"r{i}": u for i, u in enumerate(direct)}}}}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(routes, f)
        gport = free_port()
        procs.append(start([sys.executable, "-m", "corral.gateway", "--routes", f.name,
                            "--port", str(gport)]))
        wait_up(f"http://127.0.0.1:{gport}/healthz", procs[-1])
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}, load {os.getloadavg()[0]:.2f}; "
              f"{args.replicas} replicas, {args.tokens} tokens, token delay "
              f"{args.token_delay} s", flush=True)
        rows = asyncio.run(measure([u + "/v1/completions" for u in direct],
                                   [f"http://127.0.0.1:{gport}/serve/toy/v1/completions"],
                                   levels, args.requests, args.slice, modes, args.tokens,
                                   {"gateway": [procs[-1].pid],
                                    "replicas": [p.pid for p in procs[:-1]]}))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    result = {"replicas": args.replicas, "tokens": args.tokens,
              "token_delay_s": args.token_delay, "load_avg_1m": os.getloadavg()[0],
              "cpus": os.cpu_count(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
