"""Simulator speed: fill, trace replay and a 100,000-job synthetic replay, each timed.

    python bench/simulate.py [--data DIR] [--policy corral] [--synthetic 100000] [--json OUT]

1. fill on the default openb trace, seed 42, with corral's default placement (target < 5 s on
   2 cores; the paper's Go simulator takes about 10 minutes);
2. replay of the whole default openb trace as recorded, corral's default policy (target < 10 s);
3. replay of a synthetic trace of 100,000 jobs (1,600 nodes, offered load 0.9, a control-loop
   cycle every 10 s of simulated time), corral's default policy (target < 60 s).

With `--faults N` a fourth row: a synthetic replay of N jobs on the same pool with failures
(GPU MTBF 24 h per GPU with per-GPU cordons, node MTBF 3 days, 20% spot nodes interrupted once a
day on average, checkpoints every 30 min), the path where a node's or a cordon's running work is
looked up.

Prints each figure; the last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from corral.sim.alibaba import load
from corral.sim.failures import NO_FAILURES, FailureModel
from corral.sim.fill import run_fill
from corral.sim.policies import fill_scoring, replay_policy
from corral.sim.replay import ReplayOptions, run_replay
from corral.sim.synthetic import SyntheticSpec, synthetic_trace

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alibaba-gpu-2023"


def bench_fill(data: Path, policy: str) -> dict[str, object]:
    trace = load(data / "openb_node_list_gpu_node.csv", data / "openb_pod_list_default.csv")
    started = time.perf_counter()
    result = run_fill(trace, fill_scoring(policy, trace, 42), 42, policy)
    wall = time.perf_counter() - started
    print(f"fill default/{policy} seed 42: {result.final_allocation_pct:.2f}% allocated, "
          f"{result.tasks} tasks, {wall:.2f} s")
    return {"final_allocation_pct": round(result.final_allocation_pct, 4), "tasks": result.tasks,
            "wall_seconds": round(wall, 3)}


def bench_trace_replay(data: Path, policy: str) -> dict[str, object]:
    trace = load(data / "openb_node_list_gpu_node.csv", data / "openb_pod_list_default.csv")
    started = time.perf_counter()
    report = run_replay(trace, replay_policy(policy, "corral", trace), 42).report
    wall = time.perf_counter() - started
    print(f"replay default/{policy}: {report['completed']} tasks, {report['cycles']} cycles, "
          f"JCT avg {report['jct_s']['avg']:.0f} s, {wall:.2f} s")  # type: ignore[index]
    return {"tasks": report["tasks"], "cycles": report["cycles"], "jct_s": report["jct_s"],
            "wait_s": report["wait_s"], "wall_seconds": round(wall, 3)}


FAULTS = FailureModel(gpu_mtbf_s=24 * 3600.0, node_mtbf_s=3 * 86400.0, spot_fraction=0.2,
                      spot_mtbi_s=86400.0, checkpoint_interval_s=1800.0)


def bench_synthetic(tasks: int, nodes: int, policy: str, interval: float,
                    failures: FailureModel = NO_FAILURES) -> dict[str, object]:
    trace = synthetic_trace(SyntheticSpec(tasks=tasks, nodes=nodes, load=0.9, seed=1))
    started = time.perf_counter()
    report = run_replay(trace, replay_policy(policy, "corral", trace), 1,
                        ReplayOptions(interval_s=interval, failures=failures)).report
    wall = time.perf_counter() - started
    faults = (f"{report['gpu_faults']} GPU faults, {report['node_failures']} node failures, "
              f"{report['spot_interruptions']} spot interruptions, " if failures.active else "")
    print(f"replay synthetic {tasks} jobs on {nodes} nodes / {policy}, seed 1, cycle every "
          f"{interval:g} s: {report['cycles']} cycles, {faults}wait avg "
          f"{report['wait_s']['avg']:.0f} s, "  # type: ignore[index]
          f"allocation while arriving {report['gpu_allocation_pct_while_arriving']:.1f}%, "
          f"{report['preemptions']} preemptions, {wall:.2f} s")
    return {"tasks": tasks, "nodes": nodes, "interval_s": interval, "cycles": report["cycles"],
            "wait_s": report["wait_s"], "jct_s": report["jct_s"],
            "gpu_allocation_pct_while_arriving": report["gpu_allocation_pct_while_arriving"],
            "preemptions": report["preemptions"], "gpu_faults": report["gpu_faults"],
            "node_failures": report["node_failures"],
            "spot_interruptions": report["spot_interruptions"],
            "gpu_hours_lost": report["gpu_hours_lost"], "wall_seconds": round(wall, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--policy", default="corral")
    ap.add_argument("--replay-policy", default="corral")
    ap.add_argument("--synthetic", type=int, default=100_000)
    ap.add_argument("--synthetic-nodes", type=int, default=1600)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--faults", type=int, default=0, metavar="N",
                    help="a fourth row: N synthetic jobs replayed with failures (0: none)")
    ap.add_argument("--only-faults", action="store_true", help="run the --faults row alone")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    data = Path(args.data)
    out: dict[str, object] = {"benchmark": "simulate", "cpu": _cpu(),
                              "python": platform.python_version()}
    if not args.only_faults:
        out["fill"] = bench_fill(data, args.policy)
        out["trace_replay"] = bench_trace_replay(data, args.replay_policy)
        out["synthetic_replay"] = bench_synthetic(args.synthetic, args.synthetic_nodes,
                                                  args.replay_policy, args.interval)
    if args.faults:
        out["synthetic_replay_faults"] = bench_synthetic(
            args.faults, args.synthetic_nodes, args.replay_policy, args.interval, FAULTS)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


def _cpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                  if ln.startswith("Model name")), "")
    return f"{model}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
