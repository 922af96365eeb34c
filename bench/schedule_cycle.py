"""One scheduling cycle of `corral.core.schedule` on large synthetic snapshots, in two regimes.

    python bench/schedule_cycle.py                      # contended regime, both sizes, seeds 1-5
    python bench/schedule_cycle.py --regime all         # contended and full
    python bench/schedule_cycle.py --sizes 2000x20000 --seeds 1,3 [--json OUT]
    python bench/schedule_cycle.py --digest             # and each plan's SHA-256 (same plans?)

**contended** (the default): about half the pool runs when the cycle begins, and the snapshot is
built so that every action has work: a third of the leaf queues are below their quota with
pending work that only capacity held by borrowers can start (reclaim), borrowing queues have
high-priority work waiting behind their own low-priority work (preemption), a partition of
24 GB cards is fragmented by single-GPU work (consolidation), big work waits long enough to be
given a reservation, and some running work is inside its minimum runtime.

- Pool: N nodes x 8 GPUs; 30% H100 (half owned, half on-demand), 35% A100 (half on-demand,
  half spot), 25% L40S (70% spot), 10% A10G 24 GB (on-demand); providers by capacity kind,
  regions, zones and racks.
- Queues: 10 organisations x 4 teams (two levels; an organisation's quota is its teams' sum,
  the teams' quotas sum to the pool). Teams are *owed* (run ~30% of their quota, have pending
  work, 80% of it for H100), *idle* (run small A10G/L40S work, nothing pending) or *borrowers*
  (run ~140% of their quota, mostly on H100; pending work of every kind, some of it high
  priority for H100). Organisations mix them three ways ([owed, idle, borrower, borrower],
  [borrower x 3, owed], [owed, owed, idle, idle]), so reclaim is tried between siblings and
  between organisations.
- Running: H100 full of borrowers' work (8-GPU jobs, 1-GPU jobs, 4-GPU jobs, gangs across 2-4
  nodes; 30% of it priority 10, 25% inside a 2 h minimum runtime); borrowers' rest and the owed
  teams' use on A100; fractional work (0.25/0.5) on some L40S; every A10G node runs four 1-GPU
  jobs on alternate devices (its 4 free GPUs never form a whole node).
- Pending: single workers of 1, 4 and 8 GPUs, fractional shares (0.25/0.5 of an A100/L40S, or
  30 GiB of any device with room), gangs of 2-16 x 8 GPUs (any placement or one zone), 10% not
  preemptible (so not on spot), priorities 0/10/50/100, min runtimes, 3% 8-GPU jobs for A10G.
  Whole-GPU work that names no model asks for 40 GiB per device (large models), so only work
  pinned to A10G goes there.

**full** (the previous benchmark of record, unchanged): nothing runs, 100,000 pending workloads
fill the empty pool to the last GPU; no queue stays below its quota and nothing is evicted.

Each (regime, size, seed) runs in a fresh process (peak RSS is its own). Times: `build` is the
CPU time to generate the snapshot (not the cycle), `cycle` the CPU time of `schedule()` alone
(time.process_time), `wall` its wall time. `--gc live` times the cycle as the live loop runs a
large pool's step: the process's objects collected and frozen before it (untimed), the
collector off during it, one collection of what it made after it (printed apart as `sweep`);
the default, `--gc on`, lets the collector run in the timed cycle, full passes over every
object of the process included (the figures of record before 2026-12-05 13:00 UTC). Targets (issue 10, informational, not asserted):
<= 1.0 s of cycle CPU at 10,000 nodes / 100,000 pending, <= 0.3 s at 2,000 / 20,000.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from contended_regime import NOW, contended_state  # bench/ is first on a script's path
from full_regime import full_state
from live_delta import next_state

from corral.core import (
    ClusterState,
    Plan,
    SchedulerConfig,
    WorkloadState,
    schedule,
)
from corral.core import reasons as R
from corral.core.warm_start import WarmStart

RULES = (R.RULE_RECLAIM, R.RULE_PREEMPT, R.RULE_CONSOLIDATE)
TARGETS = {(10_000, 100_000): 1.0, (2_000, 20_000): 0.3}
DEFAULT_SIZES = ((10_000, 100_000), (2_000, 20_000))


REGIMES = {"contended": contended_state, "full": full_state}


# ================================================================================================
# running and reporting
# ================================================================================================
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def under_quota_with_pending(state: ClusterState) -> tuple[int, int]:
    """(leaf queues below their quota that have pending work, leaf queues) as the cycle begins."""
    used: Counter[str] = Counter()
    waiting: set[str] = set()
    for w in state.workloads:
        if w.state is WorkloadState.RUNNING:
            used[w.queue] += w.total_milli()
        else:
            waiting.add(w.queue)
    leaves = [q for q in state.queues if q.parent]
    return sum(1 for q in leaves if q.name in waiting and used[q.name] < q.quota_gpus * 1000), \
        len(leaves)


def measure(regime: str, nodes: int, pending: int, seed: int, digest: bool = False
            ) -> dict[str, object]:
    c0 = time.process_time()
    state = REGIMES[regime](nodes, pending, seed)
    build_cpu = time.process_time() - c0
    running = [w for w in state.workloads if w.state is WorkloadState.RUNNING]
    owed, leaves = under_quota_with_pending(state)
    plan, cycle_cpu, cycle_wall, sweep = timed(state=state, now=NOW, config=SchedulerConfig(),
                                               seed=seed)
    first = {
        "regime": regime, "nodes": nodes, "gpus": 8 * nodes, "pending": pending, "seed": seed,
        "running_workloads": len(running),
        "running_gpus": round(sum(w.total_milli() for w in running) / 1000, 3),
        "under_quota_with_pending": owed, "leaf_queues": leaves,
        "build_cpu_seconds": round(build_cpu, 3),
        "cycle_cpu_seconds": round(cycle_cpu, 3), "cycle_seconds": round(cycle_wall, 3),
        "gc": GC_MODE[0],
        **({"sweep_cpu_seconds": round(sweep, 3)} if GC_MODE[0] == "live" else {}),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        **plan_counts(plan),
        **({"plan_digest": plan_digest(plan)} if digest else {}),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    return {**first, **next_cycle(state, plan, seed, digest)}


def next_cycle(state: ClusterState, plan: Plan, seed: int, digest: bool) -> dict[str, object]:
    """The next two cycles as the live loop runs them (`live_delta`): `next` on the first
    plan applied plus a delta, `then` on the next plan applied plus another (the steady state:
    few placements); each warm, on the state kept since the first cycle (`WarmStart`, primed
    by that cycle run again, untimed), and cold on the same state: their plans must be equal."""
    warm = WarmStart()
    schedule(state, now=NOW, config=SchedulerConfig(), seed=seed, warm=warm)
    out: dict[str, object] = {}
    now = NOW
    for step, name in enumerate(("next", "then"), start=1):
        rebuilds = warm.rebuilds
        state, now, delta = next_state(state, plan, now, seed + step)
        hot, warm_cpu, _, warm_sweep = timed(state=state, now=now, config=SchedulerConfig(),
                                             seed=seed + step, warm=warm)
        cold, cold_cpu, _, cold_sweep = timed(state=state, now=now, config=SchedulerConfig(),
                                              seed=seed + step)
        if plan_digest(hot) != plan_digest(cold):
            raise SystemExit(f"seed {seed}: the warm cycle's plan differs from the cold cycle's")
        if GC_MODE[0] == "live":
            out |= {f"{name}_warm_sweep_cpu_seconds": round(warm_sweep, 3),
                    f"{name}_cold_sweep_cpu_seconds": round(cold_sweep, 3)}
        out |= {f"{name}_delta": delta.text(), f"{name}_warm_cpu_seconds": round(warm_cpu, 3),
                f"{name}_cold_cpu_seconds": round(cold_cpu, 3),
                f"{name}_rebuilt": warm.rebuilds > rebuilds,
                f"{name}_placed": len(hot.placements) - len(hot.moves),
                f"{name}_evictions": len(hot.evictions), f"{name}_still_pending": len(hot.pending),
                **({f"{name}_plan_digest": plan_digest(hot)} if digest else {})}
        plan = hot
    return out


#: "on": the collector runs as it will during the timed cycle (every figure before
#: 2026-12-05 13:00 UTC); "live": as the live loop runs a large pool's step (control/loop.py:
#: `step`, `_sweep`): what exists before the cycle collected and frozen (untimed), the cycle
#: without the collector, then one collection of what it made, timed apart (`sweep`)
GC_MODE = ["on"]


def timed(**kw: object) -> tuple[Plan, float, float, float]:
    """`schedule(**kw)`, its CPU and wall seconds, and (gc "live") the sweep's CPU after it."""
    live = GC_MODE[0] == "live"
    if live:
        gc.collect()
        gc.freeze()
        gc.disable()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        plan = schedule(**kw)  # type: ignore[arg-type]
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    finally:
        if live:
            gc.enable()
    c1 = time.process_time()
    if live:
        gc.collect()
    return plan, cpu, wall, time.process_time() - c1


def plan_counts(plan: Plan) -> dict[str, object]:
    moves = plan.moves
    by_rule = Counter(e.rule for e in plan.evictions)
    placed = {p.workload_id for p in plan.placements}
    return {
        "placed": len(plan.placements) - len(moves),
        "placed_gpus": round(sum(a.milli_per_device * len(a.devices) for p in plan.placements
                                 if p.workload_id not in moves for a in p.assignments) / 1000, 3),
        "evictions": {rule: by_rule.get(rule, 0) for rule in RULES},
        "moves": len(moves),
        # evictions made for work that the plan does not place after all (restarts for nothing)
        "evictions_for_unplaced": sum(e.for_workload not in placed for e in plan.evictions),
        "reservations": len(plan.reservations),
        "still_pending": len(plan.pending),
        "pending_by_reason": dict(sorted(Counter(r.code for r in plan.pending.values()).items())),
    }


def plan_digest(plan: Plan) -> str:
    """SHA-256 of the plan's repr (placements, evictions, reasons, reservations, nominations),
    first 16 hex digits: two versions of the core decide alike when their digests match."""
    return hashlib.sha256(repr(plan).encode()).hexdigest()[:16]


def run_child(regime: str, nodes: int, pending: int, seed: int, digest: bool = False
              ) -> dict[str, object]:
    """One measurement in a fresh interpreter: its peak RSS and heap are its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", regime, str(nodes), str(pending), str(seed),
         GC_MODE[0], *(["--digest"] if digest else [])],
        check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def line(r: dict[str, object]) -> str:
    ev = r["evictions"]
    assert isinstance(ev, dict)
    reasons = r["pending_by_reason"]
    assert isinstance(reasons, dict)
    return (
        f"{r['regime']:<9} {r['nodes']}x{r['pending']} seed {r['seed']}: "
        f"cycle {r['cycle_cpu_seconds']:.3f} s CPU ({r['cycle_seconds']:.3f} s wall"
        + (f", gc live: sweep after it {r['sweep_cpu_seconds']:.3f} s CPU"
           if "sweep_cpu_seconds" in r else "") + "), "
        f"build {r['build_cpu_seconds']:.3f} s CPU, peak RSS {r['peak_rss_mib']:.0f} MiB | "
        f"running {r['running_workloads']} ({r['running_gpus']:g} of {r['gpus']} GPUs), "
        f"{r['under_quota_with_pending']} of {r['leaf_queues']} teams under quota with pending | "
        f"placed {r['placed']} ({r['placed_gpus']:g} GPUs), evicted: "
        + ", ".join(f"{rule} {n}" for rule, n in ev.items())
        + f" ({r['evictions_for_unplaced']} for work the plan leaves pending), "
        f"re-placed {r['moves']}, reservations {r['reservations']}, "
        f"pending {r['still_pending']}: "
        + ", ".join(f"{code} {n}" for code, n in reasons.items())
        + (f" | plan {r['plan_digest']}" if "plan_digest" in r else "")
        + "".join(
            f"\n  {name} cycle, as the live loop runs it ({r[name + '_delta']}): warm "
            f"{r[name + '_warm_cpu_seconds']:.3f} s CPU, cold {r[name + '_cold_cpu_seconds']:.3f} s "
            f"CPU{_sweeps(r, name)}, same plan{' (kept state rebuilt)' if r[name + '_rebuilt'] else ''}; placed "
            f"{r[name + '_placed']}, evicted {r[name + '_evictions']}, pending "
            f"{r[name + '_still_pending']}"
            + (f" | plan {r[name + '_plan_digest']}" if name + "_plan_digest" in r else "")
            for name in ("next", "then") if name + "_delta" in r))


def _sweeps(r: dict[str, object], name: str) -> str:
    if name + "_warm_sweep_cpu_seconds" not in r:
        return ""
    return (f" (gc live: sweeps after them {r[name + '_warm_sweep_cpu_seconds']:.3f} / "
            f"{r[name + '_cold_sweep_cpu_seconds']:.3f} s CPU)")


def summary(results: list[dict[str, object]]) -> list[str]:
    out = []
    keys = sorted({(str(r["regime"]), int(str(r["nodes"])), int(str(r["pending"])))
                   for r in results}, key=lambda k: (k[0], -k[1]))
    for regime, nodes, pending in keys:
        rows = [r for r in results
                if (r["regime"], r["nodes"], r["pending"]) == (regime, nodes, pending)]
        for field, what in (("cycle_cpu_seconds", "first cycle (cold)"),
                            ("next_cold_cpu_seconds", "next cycle cold"),
                            ("next_warm_cpu_seconds", "next cycle warm, as the live loop runs it"),
                            ("then_cold_cpu_seconds", "the cycle after cold"),
                            ("then_warm_cpu_seconds", "the cycle after warm (live loop)")):
            cpu = sorted(float(str(r[field])) for r in rows if field in r)
            if not cpu:
                continue
            target = TARGETS.get((nodes, pending))
            met = "" if target is None else (
                f"; target <= {target:g} s: met in {sum(c <= target for c in cpu)} of {len(cpu)}")
            out.append(f"summary {regime} {nodes}x{pending} {what}: CPU s min {cpu[0]:.3f} "
                       f"median {statistics.median(cpu):.3f} max {cpu[-1]:.3f} "
                       f"over {len(cpu)} seed(s){met}")
    return out


def warnings(results: list[dict[str, object]]) -> list[str]:
    out = []
    for r in results:
        ev = r["evictions"]
        assert isinstance(ev, dict)
        missing = [rule for rule in RULES if not ev.get(rule)]
        if r["regime"] == "contended" and missing:
            out.append(f"WARNING: {r['regime']} {r['nodes']}x{r['pending']} seed {r['seed']}: "
                       f"no eviction by {', '.join(missing)}: the regime does not exercise it")
    return out


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        n, _, p = part.strip().lower().partition("x")
        try:
            sizes.append((int(n), int(p)))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not NODESxPENDING, e.g. 2000x20000") from None
    return sizes


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise SystemExit(f"--seeds: {part!r} is not a seed or a range like 1-5") from None
    return seeds


def main() -> None:
    if len(sys.argv) in (7, 8) and sys.argv[1] == "--child":
        regime, nodes, pending, seed = sys.argv[2], *map(int, sys.argv[3:6])
        GC_MODE[0] = sys.argv[6]
        print(json.dumps(measure(regime, nodes, pending, seed, digest=len(sys.argv) == 8)))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regime", choices=("contended", "full", "all"), default="contended")
    ap.add_argument("--sizes", default="10000x100000,2000x20000",
                    help="comma-separated NODESxPENDING (default: %(default)s)")
    ap.add_argument("--nodes", type=int, help="one size: nodes (with --pending)")
    ap.add_argument("--pending", type=int, help="one size: pending workloads (with --nodes)")
    ap.add_argument("--seeds", default="1-5", help="e.g. 1-5 or 1,3 (default: %(default)s)")
    ap.add_argument("--seed", type=int, help="one seed (overrides --seeds)")
    ap.add_argument("--in-process", action="store_true",
                    help="measure in this process (peak RSS is then the largest so far)")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    ap.add_argument("--digest", action="store_true",
                    help="print each plan's SHA-256 (of its repr; outside the timed cycle), to "
                         "check that two versions of the core decide alike")
    ap.add_argument("--gc", choices=("on", "live"), default="on",
                    help="the cyclic collector during the timed cycle: 'on' as it comes (the "
                         "figures of record so far), 'live' as the live loop runs a large "
                         "pool's step (frozen before, off during, one sweep after, timed "
                         "apart) (default: %(default)s)")
    args = ap.parse_args()
    GC_MODE[0] = args.gc
    if (args.nodes is None) != (args.pending is None):
        ap.error("--nodes and --pending go together")
    sizes = [(args.nodes, args.pending)] if args.nodes else parse_sizes(args.sizes)
    seeds = [args.seed] if args.seed is not None else parse_seeds(args.seeds)
    regimes = ("contended", "full") if args.regime == "all" else (args.regime,)
    print(f"python {platform.python_version()} on {platform.machine()}; "
          f"regimes {', '.join(regimes)}; seeds {', '.join(map(str, seeds))}", flush=True)
    results = []
    for regime in regimes:
        for nodes, pending in sizes:
            for seed in seeds:
                r = (measure if args.in_process else run_child)(regime, nodes, pending, seed,
                                                                args.digest)
                results.append(r)
                print(line(r), flush=True)
    for text in (*summary(results), *warnings(results)):
        print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
