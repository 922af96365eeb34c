"""What per-GPU cordons cost a scheduling cycle, and the known-answer test's host side (issue 17).

Every cycle the snapshot scans the nodes for the cordoned-GPUs label and holds each cordoned
GPU's free room (`corral.control.device_cordons.device_holds`); this times that scan on a pool of
`--nodes` 8-GPU nodes, `--cordoned` of them with one GPU out, and `--running` one-GPU workloads.
It also times the known-answer test's reference (numpy on the CPU, what every run computes once)
and the per-device judgement. No GPU is used: nothing here measures a device.

    .venv/bin/python bench/device_cordons.py --nodes 10000 --cordoned 100 --running 50000

With `--replay` it measures instead what per-GPU cordons save against whole-node cordons in the
simulator (`corral.sim.device_faults`): a seeded synthetic trace replayed with GPU faults, each
seed three times (no faults; each fault cordons its GPU; each fault cordons its node) on the
same faults. Simulated outcomes, not timings: the machine's load does not change them.

    .venv/bin/python bench/device_cordons.py --replay --seeds 1 2 3 --gpu-mtbf-h 48
"""

from __future__ import annotations

import argparse
import statistics
import time

from corral.agent import known_answer as K
from corral.control.device_cordons import LABEL, device_holds
from corral.core.model import (
    Node,
    WorkerAssignment,
    WorkerResources,
    Workload,
    WorkloadState,
)


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def replay(args: argparse.Namespace) -> None:
    from corral.sim.failures import FailureModel
    from corral.sim.policies import replay_policy
    from corral.sim.replay import ReplayOptions, run_replay
    from corral.sim.synthetic import SyntheticSpec, synthetic_trace

    print(f"trace: synthetic, {args.tasks} tasks, {args.pool} nodes, load {args.load}; GPU MTBF "
          f"{args.gpu_mtbf_h} h per GPU, sick {args.fault_min} min, back after "
          f"{args.recover_min} min healthy; checkpoints every {args.checkpoint_min} min")
    print("seed mode       faults cordoned_gpu_h lost_gpu_h completed jct_avg_h jct_p95_h "
          "goodput_pct")
    for seed in args.seeds:
        trace = synthetic_trace(SyntheticSpec(tasks=args.tasks, nodes=args.pool, load=args.load,
                                              seed=seed))
        policy = replay_policy("corral", "corral", trace)
        for mode, mtbf, per_gpu in (("no-faults", None, True), ("per-gpu", args.gpu_mtbf_h, True),
                                    ("whole-node", args.gpu_mtbf_h, False)):
            model = FailureModel(
                gpu_mtbf_s=mtbf * 3600 if mtbf else None, gpu_fault_s=args.fault_min * 60,
                gpu_recover_after_s=args.recover_min * 60,
                checkpoint_interval_s=args.checkpoint_min * 60, device_cordons=per_gpu)
            r = run_replay(trace, policy, seed, ReplayOptions(failures=model)).report
            jct = r["jct_s"]
            assert isinstance(jct, dict)
            print(f"{seed:>4} {mode:<10} {r['gpu_faults']:>6} {r['gpu_hours_cordoned']:>14.1f} "
                  f"{r['gpu_hours_lost']:>10.1f} {r['completed']:>5}/{r['tasks']:<3} "
                  f"{jct['avg'] / 3600:>9.2f} {jct['p95'] / 3600:>9.2f} {r['goodput_pct']:>11.1f}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replay", action="store_true",
                    help="per-GPU vs whole-node cordons in the simulator (not timings)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--tasks", type=int, default=600)
    ap.add_argument("--pool", type=int, default=12, help="nodes of the synthetic pool")
    ap.add_argument("--load", type=float, default=0.9)
    ap.add_argument("--gpu-mtbf-h", type=float, default=48.0)
    ap.add_argument("--fault-min", type=float, default=30.0)
    ap.add_argument("--recover-min", type=float, default=10.0)
    ap.add_argument("--checkpoint-min", type=float, default=30.0)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--cordoned", type=int, default=100)
    ap.add_argument("--running", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    if args.replay:
        replay(args)
        return
    base = (("corral.dev/vendor", "nvidia"), ("zone", "a"))
    nodes = [Node(f"n{i:05d}", "p", "H100", 8, 81920, 64_000, 262_144,
                  labels=tuple(sorted((*base, (LABEL, "7"))) if i < args.cordoned else base))
             for i in range(args.nodes)]
    running = [Workload(f"w{i}", "q", WorkerResources(gpus=1), state=WorkloadState.RUNNING,
                        assignments=(WorkerAssignment(0, f"n{i % args.nodes:05d}",
                                                      ((i // args.nodes) % 8,), 1000, 81920),))
               for i in range(args.running)]
    pending = [Workload(f"p{i}", "q", WorkerResources(gpus=1)) for i in range(args.running)]
    running = running + pending  # the snapshot's workloads: as many waiting as running
    holds = device_holds(nodes, running)
    took = timed(lambda: device_holds(nodes, running), args.repeat)
    print(f"device_holds: {len(holds)} holds, {took:.2f} ms median ({args.nodes} nodes, "
          f"{args.cordoned} with a GPU out, {args.running} running + as many pending)")
    clean = [Node(n.id, n.provider, n.gpu_model, 8, 81920, 64_000, 262_144, labels=base)
             for n in nodes]
    print(f"device_holds, no GPU out: {timed(lambda: device_holds(clean, running), args.repeat):.2f}"
          " ms median")
    a, b, pattern = K.inputs()
    print(f"known-answer reference (numpy, 1024^2 matmul + 64 MiB pattern): "
          f"{timed(lambda: K.expected(a, b, pattern), 5):.0f} ms median")
    want = K.expected(a, b, pattern)
    print(f"known-answer judgement of one device: "
          f"{timed(lambda: K.judge(0, want[0], want[1], want), 5):.0f} ms median")


if __name__ == "__main__":
    main()
