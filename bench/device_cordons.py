"""What per-GPU cordons cost a scheduling cycle, and the known-answer test's host side (issue 17).

Every cycle the snapshot scans the nodes for the cordoned-GPUs label and holds each cordoned
GPU's free room (`corral.control.device_cordons.device_holds`); this times that scan on a pool of
`--nodes` 8-GPU nodes, `--cordoned` of them with one GPU out, and `--running` one-GPU workloads.
It also times the known-answer test's reference (numpy on the CPU, what every run computes once)
and the per-device judgement. No GPU is used: nothing here measures a device.

    .venv/bin/python bench/device_cordons.py --nodes 10000 --cordoned 100 --running 50000
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--cordoned", type=int, default=100)
    ap.add_argument("--running", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
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
