"""A service live: the Azure LLM inference trace replayed through `corral up`'s endpoint while
corral autoscales it, then a rolling update and a killed replica under load.

    python bench/serve.py [--offset 600] [--window 480] [--speed 4] [--max-replicas 8]
                          [--target 4] [--seed 1] [--json OUT]

What runs for real: `corral up` (SQLite, the local backend, the control loop, the gateway mounted
at /serve/<service>/, the service autoscaler), one process per replica of
examples/serve/model_server.py, and an open-loop async load generator (httpx) on this machine.

The trace (../shared/data/azure-llm-inference-2023, Patel et al., ISCA 2024): the requests
arriving in [--offset, --offset + --window) s of its hour, sent at their own times divided by
--speed (480 s at speed 4: two minutes). Each request is a streamed completion whose length
holds the replica for a time drawn from the trace: ceil(GeneratedTokens / 16) tokens at 80 ms a
token (a 211-token mean answer holds a replica ~1.1 s; the model server sleeps, it burns no
CPU), after a 50 ms "prefill". The replica is a stand-in for an LLM server whose decode runs
at ~200 tokens/s per request with unbounded batching: what scales is the requests in flight.

Regimes, each printed with its requests, errors and latencies:

1. scale from zero: the service (min_replicas 0) is left to scale to zero first; the first
   request waits in the gateway's queue while a replica starts. Scale-up time = that first
   request sent -> the new replica ready (its ReplicaReady event).
2. the trace replay: the autoscaler (target --target in flight per replica) follows the
   arrivals. Every scale-up decision -> its new replicas ready is listed. Replica-seconds =
   the processes alive (every replica starting, ready or draining with a worker), sampled every
   0.25 s, against a static service of the peak size over the same span.
3. rolling update under load (a new spec: one more env var): requests failed while every
   replica is replaced, from the update to the last old replica gone.
4. a killed replica under load: kill -9 of one ready replica's process; requests failed from
   the kill to the replica serving again.

A request fails when its status is not 200 or its stream does not end with [DONE] (a stream cut
mid-way is a failure, not a success). TTFB = time to the first byte of the response body (the
first token's event); total = to the end of the stream. Latencies come from time.perf_counter
in the load generator, which shares the machine's CPUs with everything else: read them with
the load average printed beside them. The last line is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import itertools
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from corral.testing.corral_up import CorralServer, stop_workers

if importlib.util.find_spec("sniffio") is None:  # as corral.gateway.app: no sys.path rescan
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "examples" / "serve" / "model_server.py"
TRACE = ROOT.parent / "shared" / "data" / "azure-llm-inference-2023" / \
    "AzureLLMInferenceTrace_conv.csv"
TOKENS_PER_CHUNK = 16
TOKEN_DELAY_S = 0.08
PREFILL_S = 0.05


def load_trace(path: Path) -> list[tuple[float, int]]:
    """(seconds since the trace's first request, generated tokens), in arrival order."""
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            ts = datetime.fromisoformat(r["TIMESTAMP"][:26])
            rows.append((ts.timestamp(), int(r["GeneratedTokens"])))
    t0 = rows[0][0]
    return [(t - t0, g) for t, g in rows]


def arrivals(trace: list[tuple[float, int]], offset: float, window: float, speed: float
             ) -> list[tuple[float, int]]:
    """(send at, s from the replay's start; tokens to ask for) of the slice, compressed."""
    return [((t - offset) / speed, max(1, math.ceil(g / TOKENS_PER_CHUNK)))
            for t, g in trace if offset <= t < offset + window]


def poisson(rate: float, duration: float, rng: random.Random, trace: list[tuple[float, int]]
            ) -> list[tuple[float, int]]:
    """Steady load for the update and kill regimes: Poisson arrivals, lengths from the trace."""
    out: list[tuple[float, int]] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            return out
        out.append((t, max(1, math.ceil(rng.choice(trace)[1] / TOKENS_PER_CHUNK))))


@dataclass
class Result:
    sent_at: float  # time.time()
    ttfb: float = math.nan
    total: float = math.nan
    error: str = ""


async def one(client: httpx.AsyncClient, url: str, tokens: int) -> Result:
    res = Result(time.time())
    t0 = time.perf_counter()
    body = {"prompt": "tell me about corral", "max_tokens": tokens, "stream": True}
    try:
        async with client.stream("POST", url, json=body) as r:
            tail = b""
            if r.status_code != 200:  # the gateway's own answer: say which
                res.error = f"HTTP {r.status_code} {(await r.aread())[:160]!r}"
                return res
            async for chunk in r.aiter_raw():
                if math.isnan(res.ttfb):
                    res.ttfb = time.perf_counter() - t0
                tail = (tail + chunk)[-64:]
        res.total = time.perf_counter() - t0
        if not tail.endswith(b"data: [DONE]\n\n"):
            res.error = "stream cut"
    except httpx.HTTPError as e:  # after the first byte: a stream cut; before: no answer
        res.error = ("stream cut" if not math.isnan(res.ttfb) else "no response") + \
            f" ({type(e).__name__})"
    return res


async def replay(url: str, plan: list[tuple[float, int]],
                 until: threading.Event | None = None) -> list[Result]:
    """Send every request of `plan` at its time (open loop: a slow answer delays nothing);
    with `until`, only those due before it is set."""
    # idle connections kept below uvicorn's 5 s keep-alive: else the server may close one just
    # as a request goes out on it, a failure of the load generator, not of what it measures
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256,
                          keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:
        start = time.perf_counter()

        async def at(t: float, tokens: int) -> Result | None:
            await asyncio.sleep(max(0.0, start + t - time.perf_counter()))
            if until is not None and until.is_set():
                return None
            return await one(client, url, tokens)

        got = await asyncio.gather(*(at(t, n) for t, n in plan))
        return [r for r in got if r is not None]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def summary(results: list[Result]) -> dict[str, Any]:
    ok = [r for r in results if not r.error]
    errors: dict[str, int] = {}
    for r in results:
        if r.error:  # grouped by kind; the first of each kind kept whole in "error_examples"
            kind = r.error.split(" b'")[0].split(" b\"")[0]
            errors[kind] = errors.get(kind, 0) + 1
    examples: dict[str, str] = {}
    for r in results:
        if r.error:
            examples.setdefault(r.error.split(" b'")[0].split(" b\"")[0], r.error)
    return {"requests": len(results), "failed": len(results) - len(ok), "errors": errors,
            "error_examples": list(examples.values()),
            "ttfb_p50_s": pct([r.ttfb for r in ok], 0.5),
            "ttfb_p99_s": pct([r.ttfb for r in ok], 0.99),
            "total_p50_s": pct([r.total for r in ok], 0.5),
            "total_p99_s": pct([r.total for r in ok], 0.99)}


def line(name: str, s: dict[str, Any]) -> str:
    return (f"{name:<18} requests {s['requests']:>5}  failed {s['failed']:>3} {s['errors'] or ''}"
            f"  TTFB p50 {s['ttfb_p50_s'] * 1e3:7.0f} ms  p99 {s['ttfb_p99_s'] * 1e3:7.0f} ms"
            f"  total p50 {s['total_p50_s']:5.2f} s  p99 {s['total_p99_s']:5.2f} s")


@dataclass
class Sampler:
    """Samples the service every `period` s: live replica processes, ready, desired."""

    server: CorralServer
    sid: str
    period: float = 0.25
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with self.server.client() as c:
            while not self.stop.is_set():
                s = c.service(self.sid)
                alive = sum(r.workload_state in ("starting", "running") for r in s.replicas)
                self.samples.append((time.time(), alive, s.ready, s.desired))
                self.stop.wait(self.period)

    def replica_seconds(self, t0: float, t1: float) -> tuple[float, int]:
        """Replica-seconds of live processes in [t0, t1], and the peak desired count."""
        total, peak = 0.0, 0
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        for (t, alive, _, desired), nxt in itertools.pairwise(inside):
            total += alive * (nxt[0] - t)
            peak = max(peak, desired, alive)
        return total, peak


def wait_for(what: str, check: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise SystemExit(f"{what}: not within {timeout_s}s")


def service_spec(args: argparse.Namespace, revision: str = "1") -> dict[str, Any]:
    return {"name": "llm", "queue": "default", "kind": "service", "gpus": 0, "cpu": 0.1,
            "memory": 128, "env": {"REVISION": revision},
            "command": [sys.executable, str(SERVER), "--host", "127.0.0.1",
                        "--token-delay", str(TOKEN_DELAY_S), "--prefill-delay", str(PREFILL_S),
                        "--startup-delay", "1"],
            "replicas": 1, "min_replicas": 0, "max_replicas": args.max_replicas,
            "restart_backoff": 0.5, "preemption_grace": "30s", "readiness": {"path": "/healthz", "period_s": 0.5},
            "autoscale": {"target_in_flight": args.target, "scale_to_zero_after": "10s",
                          "stable_window": "12s", "scale_down_window": "12s"}}


def ready_times(server: CorralServer, sid: str) -> dict[str, tuple[float, float | None]]:
    """Per replica: (submitted at, first ReplicaReady at)."""
    out = {}
    with server.client() as c:
        for r in c.service(sid).replicas:
            w = c.get(r.id)
            ready = [e.at for e in c.events(r.id).items if e.reason == "ReplicaReady"]
            out[r.id] = (w.submitted_at, min(ready) if ready else None)
    return out


def scale_ups(server: CorralServer, sid: str, t0: float, t1: float) -> list[dict[str, Any]]:
    """Each autoscaler scale-up in [t0, t1]: its reason and its new replicas' time to ready."""
    with server.client() as c:
        events = [e for e in c.service(sid).events
                  if e.subject == "autoscaler" and t0 <= e.at <= t1 and "ScaledUp" in e.reason]
    replicas = ready_times(server, sid)
    out = []
    for e in events:
        new = [ready - sub for sub, ready in replicas.values()
               if ready is not None and abs(sub - e.at) < 0.5]
        out.append({"at_s": round(e.at - t0, 2), "reason": e.message,
                    "to_ready_s": [round(x, 2) for x in new]})
    return out


def worker_pid(data_dir: Path, rid: str, attempt: int) -> int:
    record = data_dir / "work" / rid / str(attempt) / "worker-0" / "child.json"
    return int(json.loads(wait_for(f"{record}", lambda: record.exists() and record.read_text()))
               ["pid"])


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run(args: argparse.Namespace) -> dict[str, Any]:
    trace = load_trace(Path(args.trace))
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"args": vars(args), "load_start": load_avg()}
    server = CorralServer(Path(tempfile.mkdtemp(prefix="corral-serve-bench-")))
    server.start()
    try:
        with server.client() as c:
            sid = c.submit(service_spec(args)).group_id
            wait_for("the service scaled to zero", lambda: c.service(sid).state == "idle", 180)
        url = f"{server.url}/serve/{sid}/v1/completions"
        sampler = Sampler(server, sid)
        threading.Thread(target=sampler.run, daemon=True).start()

        # 1. scale from zero: one request while no replica runs
        t_cold = time.time()
        cold = asyncio.run(replay(url, [(0.0, 4)]))
        first_ready = min((r for sub, r in ready_times(server, sid).values()
                           if r and sub >= t_cold - 1.0), default=None)
        out["cold"] = {**summary(cold), "first_request_to_ready_s":
                       None if first_ready is None else round(first_ready - t_cold, 2)}
        print(line("scale from zero", out["cold"]), f"| queued request -> replica ready "
              f"{out['cold']['first_request_to_ready_s']} s | load {load_avg()}", flush=True)

        # 2. the trace replay
        plan = arrivals(trace, args.offset, args.window, args.speed)
        t0 = time.time()
        results = asyncio.run(replay(url, plan))
        t1 = time.time()
        used, peak = sampler.replica_seconds(t0, t1)
        out["replay"] = {**summary(results), "span_s": round(t1 - t0, 1),
                         "replica_seconds": round(used, 1), "peak_replicas": peak,
                         "static_peak_replica_seconds": round(peak * (t1 - t0), 1),
                         "share_of_static_peak": round(used / (peak * (t1 - t0)), 3) if peak
                         else None, "scale_ups": scale_ups(server, sid, t0, t1),
                         "load": load_avg()}
        r = out["replay"]
        print(line("trace replay", r), f"| {len(plan)} req in {r['span_s']} s | replica-s "
              f"{r['replica_seconds']} vs static peak ({peak}) {r['static_peak_replica_seconds']}"
              f" = {r['share_of_static_peak']} | load {r['load']}", flush=True)
        for s in r["scale_ups"]:
            print(f"  +{s['at_s']:>6} s  new replicas ready after {s['to_ready_s']} s: "
                  f"{s['reason']}", flush=True)

        # 3. a rolling update under steady load
        out["update"] = update_under_load(server, sid, url, args, rng, trace)
        print(line("rolling update", out["update"]), f"| rollout {out['update']['rollout_s']} s"
              f" | load {out['update']['load']}", flush=True)

        # 4. a replica killed under steady load
        out["kill"] = kill_under_load(server, sid, url, args, rng, trace)
        k = out["kill"]
        print(line("killed replica", k), f"| failed: {k['failed_sent_before_kill']} sent before "
              f"the kill, {k['failed_sent_after_kill']} after | back serving after "
              f"{k['back_s']} s | load {k['load']}", flush=True)
        sampler.stop.set()
    finally:
        server.stop()
        stop_workers(server.data_dir)
    return out


def steady(url: str, args: argparse.Namespace, rng: random.Random,
           trace: list[tuple[float, int]], action: Any) -> tuple[list[Result], Any]:
    """Steady load (--rate requests/s) from 5 s before `action()` (run in a thread) to 5 s
    after it has returned; at most --steady-s seconds."""
    plan = poisson(args.rate, args.steady_s, rng, trace)
    box: dict[str, Any] = {}
    done = threading.Event()

    def later() -> None:
        time.sleep(5)
        try:
            box["out"] = action()
        except BaseException as e:
            box["out"] = f"failed: {e}"
        time.sleep(5)
        done.set()

    t = threading.Thread(target=later)
    t.start()
    results = asyncio.run(replay(url, plan, done))
    t.join()
    return results, box.get("out")


def update_under_load(server: CorralServer, sid: str, url: str, args: argparse.Namespace,
                      rng: random.Random, trace: list[tuple[float, int]]) -> dict[str, Any]:
    def roll() -> float:
        with server.client() as c:
            old = {r.id for r in c.service(sid).replicas if r.state != "ended"}
            t = time.time()
            c.update_service(sid, service_spec(args, revision="2"))

            def done() -> bool:
                s = c.service(sid)
                live = [r for r in s.replicas if r.state != "ended"]
                return bool(live) and s.draining == 0 and s.ready == s.desired and all(
                    r.id not in old for r in live)
            wait_for("the rollout", done, args.steady_s - 15)
            return round(time.time() - t, 1)

    results, took = steady(url, args, rng, trace, roll)
    return {**summary(results), "rollout_s": took, "load": load_avg()}


def kill_under_load(server: CorralServer, sid: str, url: str, args: argparse.Namespace,
                    rng: random.Random, trace: list[tuple[float, int]]) -> dict[str, Any]:
    def kill() -> float | str:
        with server.client() as c:
            victim = wait_for("a ready replica", lambda: next(
                (r for r in c.service(sid).replicas if r.state == "ready"), None), 60)
            pid = worker_pid(server.data_dir, victim.id, victim.attempt)
            t = time.time()
            os.kill(pid, signal.SIGKILL)
            killed_at.append(t)

            def back() -> str:
                now = {r.id: r for r in c.service(sid).replicas}.get(victim.id)
                if now is None or now.state == "ended":  # scaled down meanwhile
                    return "ended (scaled down)"
                return "ready" if now.attempt > victim.attempt and now.state == "ready" else ""
            how = wait_for("the killed replica back", back, args.steady_s - 15)
            took = round(time.time() - t, 1)
            return took if how == "ready" else f"{how} after {took} s"

    killed_at: list[float] = []
    results, took = steady(url, args, rng, trace, kill)
    # a request sent before the kill may have been running on the killed process (its stream
    # cannot be saved); one sent after it must not fail
    after = [r for r in results if killed_at and r.sent_at >= killed_at[0]]
    return {**summary(results), "back_s": took, "load": load_avg(),
            "failed_sent_before_kill": sum(1 for r in results if r.error) - sum(
                1 for r in after if r.error),
            "failed_sent_after_kill": sum(1 for r in after if r.error)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trace", default=str(TRACE))
    p.add_argument("--offset", type=float, default=600.0, help="trace seconds skipped")
    p.add_argument("--window", type=float, default=480.0, help="trace seconds replayed")
    p.add_argument("--speed", type=float, default=4.0, help="time compression")
    p.add_argument("--max-replicas", type=int, default=8)
    p.add_argument("--target", type=float, default=4.0, help="in flight per replica")
    p.add_argument("--rate", type=float, default=8.0, help="steady load, requests/s")
    p.add_argument("--steady-s", type=float, default=180.0, help="at most, per regime")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    out = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
