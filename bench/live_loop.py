"""Live-loop benchmark: the control loop at pool scale, in-process, on the shipped fake backend.

It builds `--nodes` nodes (8 GPUs each, three GPU models, four providers) and `--workloads`
pending workloads (a mix of 1, 2, 4 and 8 GPU jobs over four queues, more than the pool holds)
in a fresh store, grants every queue credits (unless `--unfunded`: then every hold is an
unmetered zero), wires the loop as `corral up` does (the ledger's `Accounting` as admission),
and steps it by hand on a manual clock:

1. the first step (places what fits, launches it): its time and per-stage breakdown;
2. a step with nothing to do (median of `--idle-steps`);
3. a step that places `--place` workloads: half an hour on, that many running jobs finish, the
   step settles them and places as many from the backlog (end to end, commits included);
4. a restart: a new loop, backend view and ledger over the same store and fake machines, timed
   from construction to the end of its first step (its first decision); the old loop is let
   go first, as a new process would start without it. `--restart planned` (the default) ends
   the old loop as `corral up` does at a planned stop (`ControlLoop.stop`: the ledger saves a
   checkpoint before the lease is given up, timed as `stop_s`), `--restart crash` only gives
   the lease up (the new ledger replays what came after its latest checkpoint);
5. reads, each with the dashboard's cache emptied first: `/v1/dashboard/pool` (and the Pool
   page's `/v1/dashboard/pool/page?limit=100`), `/v1/nodes`
   (whole, and a page of 100), `/v1/nodes/summary`, `/metrics`, `/v1/dashboard/queues`
   (in-process ASGI client; the first read, the median of the next three, the bytes).

Each step reports the pending-reason rows its apply wrote (`reason_rows_written`).
Prints one JSON line. Peak RSS is the whole process (store rows built here included), also
as its high-water mark after the first step, the place step and the restart.

    .venv/bin/python bench/live_loop.py [--nodes 1000] [--workloads 10000] [--place 1000]
                                        [--store sqlite|postgres]

The issue's figures: `--nodes 10000 --workloads 100000 --place 10000`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from corral.backends.fake import FakeBackend, FakeWorld
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock, Submissions
from corral.control import apply as apply_module
from corral.control.accounting import Accounting
from corral.control.loop import StepReport
from corral.control.submission import _Accepted, _row, _store_accepted, stored_form
from corral.core.model import CapacityKind, Node, Queue
from corral.ledger import grant
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url
from corral.store.journal_sql import LedgerDb
from corral.store.schema import User

MODELS = ("H100", "A100", "L40S")
PROVIDERS = ("aws-us", "gcp-eu", "onprem-a", "onprem-b")
QUEUES = ("research", "prod", "interns", "batch")
SIZES = (1,) * 14 + (2,) * 3 + (4,) * 2 + (8,)  # GPUs per job: mostly small, some whole nodes


def build_nodes(n: int) -> list[Node]:
    return [Node(f"node-{i:05d}", PROVIDERS[i % len(PROVIDERS)], MODELS[i % len(MODELS)], 8,
                 81920, 96_000, 1_048_576, price_per_gpu_hour=1.0 + (i % 7) / 4,
                 capacity_kind=CapacityKind.SPOT if i % 5 == 0 else CapacityKind.ON_DEMAND,
                 region=PROVIDERS[i % len(PROVIDERS)], rack=f"rack-{i // 32}",
                 nvlink_domain=f"nvl-{i}")
            for i in range(n)]


def spec_of(i: int) -> WorkloadSpec:
    gpus = SIZES[i % len(SIZES)]
    body: dict[str, Any] = {"name": f"job{i % 97}", "queue": QUEUES[i % len(QUEUES)],
                            "gpus": gpus, "cpu": 1, "memory": "8GiB",
                            "command": ["python", "train.py"], "priority": i % 3}
    if i % 4 == 0:
        body["gpu_models"] = [MODELS[i % len(MODELS)]]
    if i % 3 == 0:
        body["max_runtime"] = 3600 * (1 + i % 5)
    return WorkloadSpec.model_validate(body)


def populate(store: Store, nodes: list[Node], workloads: int, now: float,
             funded: bool = True) -> None:
    with store.write() as c:
        P.sync_nodes(c, [{"name": p, "region": p} for p in PROVIDERS], nodes)
        share = len(nodes) * 8 / len(QUEUES) / 2
        for q in QUEUES:
            P.upsert_queue(c, Queue(q, quota_gpus=share))
    if funded:
        fund(store, len(nodes), now)
    submit_many(store, range(workloads), now)


def fund(store: Store, nodes: int, now: float) -> None:
    """Credits for every queue, as users run it: admission prices each pending workload, every
    placed attempt gets a real hold (escrow rows, not an unmetered zero) and each ended one a
    settlement at its real cost. Enough that nothing is refused for budget: each queue could
    run the whole pool at the dearest price (2.5/GPU-hour) for the longest runtime (5 h) 20
    times over, so the figures are the ledger's cost, not a smaller placement."""
    credits = nodes * 8 * 2.5 * 5 * 20
    with LedgerDb(store).write() as s:
        for q in QUEUES:
            grant(s.journal, key=f"bench-grant-{q}", queue=q, amount=f"{credits:.2f}", at=now)


def submit_many(store: Store, indices: range, now: float) -> None:
    specs: dict[int, tuple[WorkloadSpec, dict[str, Any]]] = {}
    batch: list[_Accepted] = []
    for i in indices:
        key = i % 300
        if key not in specs:
            spec = spec_of(i)
            specs[key] = (spec, stored_form(spec))
        spec, body = specs[key]
        batch.append(_Accepted([_row(f"w{i:07d}", f"w{i:07d}", spec, "ann", body, now + i * 1e-4)],
                               "bench"))
        if len(batch) == 5000:
            with store.write() as c:
                _store_accepted(c, batch)
            batch = []
    if batch:
        with store.write() as c:
            _store_accepted(c, batch)


def make_loop(store: Store, world: FakeWorld, clock: ManualClock) -> ControlLoop:
    backend = FakeBackend(world=world)
    return ControlLoop(store, backend, clock=clock, admission=Accounting(store),
                       settings=ControlSettings(interval_s=1.0),
                       leadership=Leadership(store, holder="bench", ttl_s=3600.0))


RAN_S = 1800.0  # how long the jobs that end before the place step ran
PROFILE: dict[str, str] = {}  # --profile: which step to profile -> where to write the stats
GC_PAUSES: list[float] = [0.0, 0.0]  # [seconds in the cyclic garbage collector, start of one]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        GC_PAUSES[1] = time.perf_counter()
    else:
        GC_PAUSES[0] += time.perf_counter() - GC_PAUSES[1]


gc.callbacks.append(_gc_timer)

#: pending-reason rows the plans' apply wrote (issue 16: a sentence quoting a queue's live use
#: rewrote every waiting workload of that queue at each step); counted around apply's writer
REASON_ROWS = [0]
_write_reasons = apply_module._write_reasons


def _counted_reasons(*args: Any, **kwargs: Any) -> int:
    written: int = _write_reasons(*args, **kwargs)
    REASON_ROWS[0] += written
    return written


apply_module._write_reasons = _counted_reasons  # type: ignore[assignment]


def timed_step(loop: ControlLoop, clock: ManualClock, name: str = "") -> tuple[float, StepReport]:
    profiler = None
    if name and PROFILE.get("step") == name:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    import tracemalloc

    if tracemalloc.is_tracing():  # --tracemalloc: the step's own high-water mark
        tracemalloc.reset_peak()
    started, cpu, paused = time.perf_counter(), time.process_time(), GC_PAUSES[0]
    rows = REASON_ROWS[0]
    report = loop.step()
    report.reason_rows = REASON_ROWS[0] - rows  # type: ignore[attr-defined]
    report.stages["cpu_s"] = time.process_time() - cpu  # this process's CPU: steadier under load
    report.stages["gc_s"] = GC_PAUSES[0] - paused  # of the step, in the cyclic collector
    if tracemalloc.is_tracing():
        report.stages["traced_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(PROFILE["path"])
    elapsed = time.perf_counter() - started
    clock.advance(1.0)
    return elapsed, report


def summary(elapsed: float, report: StepReport) -> dict[str, Any]:
    return {"s": round(elapsed, 3), "scheduled": report.scheduled, "launched": report.launched,
            "stale": report.stale, "reason_rows_written": getattr(report, "reason_rows", None),
            "stages": {k: round(v, 3) for k, v in sorted(report.stages.items())},
            "cpu_stages": {k: round(v, 3) for k, v in sorted(report.cpu_stages.items())}}


def finish_running(world: FakeWorld, count: int) -> int:
    done = 0
    for key, workers in world.workers.items():
        if done == count:
            break
        if key in world.released or any(w.state.ended for w in workers):
            continue
        for w in workers:
            w.state = w.state.SUCCEEDED
            w.exit_code, w.reason = 0, "Exited"
        world.touch(key)  # edited directly: the backend's change log must say so
        done += 1
    return done


def reads(store: Store, clock: ManualClock) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from corral.api import ApiContext, create_app

    with store.write() as c:
        if c.execute(select(User).where(User.name == "root")).first() is None:
            A.create_user(c, "root", "admin", [], 0.0)
        token = A.create_token(c, "root", 0.0)
    app = create_app(ApiContext(store, Submissions(store), clock=clock, backend_name="fake"))
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {}
    for path in ("/v1/dashboard/pool", "/v1/dashboard/pool/summary",
                 "/v1/dashboard/pool/page?limit=100", "/v1/nodes", "/v1/nodes?limit=100",
                 "/v1/nodes/summary", "/metrics", "/v1/dashboard/queues"):
        times, size = [], 0
        for _ in range(4):
            app.state.corral_web.reader._cached = None  # every read pays the store
            started = time.perf_counter()
            resp = client.get(path, headers=headers)
            times.append(time.perf_counter() - started)
            resp.raise_for_status()
            size = len(resp.content)
        # the first read of a new server process reads the whole pool once (its reader's reload)
        out[path] = {"first_ms": round(times[0] * 1000, 1),
                     "median_ms": round(statistics.median(times[1:]) * 1000, 1), "bytes": size}
    return out


@contextlib.contextmanager
def store_for(kind: str, tmp: Path) -> Iterator[Store]:
    if kind == "sqlite":
        store = Store(sqlite_url(tmp / "corral.db"))
        store.upgrade()
        try:
            yield store
        finally:
            store.close()
        return
    from corral.testing.postgres import PostgresServer

    with PostgresServer() as pg:
        store = Store(pg.url)
        store.upgrade()
        try:
            yield store
        finally:
            store.close()


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def memory_top(lines: int) -> dict[str, Any] | None:
    """With --tracemalloc N: what is held now (after the place step: the loop's steady state,
    every store row built here still alive), the N biggest allocation sites."""
    if not lines:
        return None
    import tracemalloc

    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.statistics("lineno")
    top = [{"site": f"{s.traceback[0].filename.split('/site-packages/')[-1].split('/src/')[-1]}"
                    f":{s.traceback[0].lineno}",
            "mib": round(s.size / 2**20, 1), "blocks": s.count} for s in stats[:lines]]
    return {"total_mib": round(sum(s.size for s in stats) / 2**20, 1), "top": top}


def run(args: argparse.Namespace) -> dict[str, Any]:
    clock = ManualClock(1_800_000_000.0)
    with tempfile.TemporaryDirectory() as tmp, store_for(args.store, Path(tmp)) as store:
        t = time.perf_counter()
        populate(store, build_nodes(args.nodes), args.workloads, clock.now(),
                 funded=not args.unfunded)
        built_s = time.perf_counter() - t
        rss_built = peak_rss_mib()
        if args.tracemalloc:
            import tracemalloc

            populate_peak = tracemalloc.get_traced_memory()[1] / 2**20
        world = FakeWorld()
        loop = make_loop(store, world, clock)
        first = summary(*timed_step(loop, clock, "first"))  # (a report holds its plan)
        peaks = {"first_step": peak_rss_mib()}  # the high-water mark so far, phase by phase
        timed_step(loop, clock)  # the launches' first poll: starting -> running
        idle = [timed_step(loop, clock, "idle") for _ in range(args.idle_steps)]
        # The jobs that end ran half an hour (within every max_runtime, before any rolling
        # top-up is due): their settlements charge a real cost and release the rest.
        clock.advance(RAN_S)
        finished = finish_running(world, args.place)
        place = summary(*timed_step(loop, clock, "place"))
        peaks["place_step"] = peak_rss_mib()
        held = memory_top(args.tracemalloc)
        if held:
            held["populate_peak_mib"] = round(populate_peak, 1)
        with store.read() as c:
            counts = W.count_by_state(c)
        stopped, stop_cpu = time.perf_counter(), time.process_time()
        if args.restart == "planned":
            loop.stop()  # the ledger's checkpoint, then the lease given up
        else:  # as after a crash: no checkpoint; the lease given up so the next one leads now
            loop.leadership.resign()
        stop_s, stop_cpu_s = time.perf_counter() - stopped, time.process_time() - stop_cpu
        # A restart is a new process: the old loop's state is let go first (its frozen
        # objects too), so that the peak below is one loop's, not two side by side.
        del loop
        gc.unfreeze()
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        again = make_loop(store, world, clock)
        restart = timed_step(again, clock, "restart")
        restart_s = time.perf_counter() - started
        restart_cpu_s = time.process_time() - cpu
        timed_step(again, clock)
        peaks["restart"] = peak_rss_mib()
        read_times = {} if args.skip_reads else reads(store, clock)
        if args.keep_db and args.store == "sqlite":  # the rows, for an old/new comparison
            import sqlite3

            with (contextlib.closing(sqlite3.connect(Path(tmp) / "corral.db")) as src,
                  contextlib.closing(sqlite3.connect(args.keep_db)) as dst):
                src.backup(dst)
    idle_median = statistics.median(e for e, _ in idle)
    return {
        "bench": "live_loop", "store": args.store, "nodes": args.nodes,
        "workloads": args.workloads, "funded": not args.unfunded, "populate_s": round(built_s, 1),
        "first_step": first,
        "idle_step_s": round(idle_median, 3),
        "idle_step": summary(*min(idle, key=lambda er: abs(er[0] - idle_median))),
        "place_step": {**place, "finished_before": finished},
        "restart": args.restart, "stop_s": round(stop_s, 3), "stop_cpu_s": round(stop_cpu_s, 3),
        "restart_to_first_decision_s": round(restart_s, 3),
        "restart_to_first_decision_cpu_s": round(restart_cpu_s, 3),
        "restart_step": summary(*restart),
        "states": counts, "reads": read_times,
        "rss_after_populate_mib": rss_built, "peak_rss_mib": peak_rss_mib(),
        "peak_rss_mib_by_phase": peaks,
        **({"tracemalloc_after_place": held} if held else {}),
        "machine": {"nproc": os.cpu_count(), "load": os.getloadavg()[0],
                    "python": platform.python_version()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--workloads", type=int, default=10_000)
    ap.add_argument("--place", type=int, default=1000, help="jobs that end before the place step")
    ap.add_argument("--idle-steps", type=int, default=3)
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--profile", choices=("first", "idle", "place", "restart"),
                    help="write a cProfile of that step (the last one, for idle) to --profile-out")
    ap.add_argument("--profile-out", default="live_loop.prof")
    ap.add_argument("--unfunded", action="store_true",
                    help="grant no credits: every queue unmetered (zero holds, as before)")
    ap.add_argument("--restart", choices=("planned", "crash"), default="planned",
                    help="end the old loop at a planned stop (its ledger checkpoint) or as "
                         "after a crash (no checkpoint)")
    ap.add_argument("--skip-reads", action="store_true", help="leave out the API reads")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                    help="trace allocations (slow) and report the N biggest sites held after "
                         "the place step")
    ap.add_argument("--keep-db", metavar="PATH",
                    help="SQLite: copy the store to PATH at the end (compare what old and new "
                         "code stored)")
    args = ap.parse_args()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    if args.profile:
        PROFILE.update(step=args.profile, path=args.profile_out)
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
