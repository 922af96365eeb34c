"""The fill (fragmentation) table: corral's policies on the six Alibaba openb traces, seeds 42-51.

    python bench/fill_table.py [--data DIR] [--seeds 42-51] [--workers 2] [--json OUT] [--plot DIR]

Runs the fill experiment (corral.sim.fill) for Random, BestFit, FGD (exact gradient), FGD as the
paper's Kubernetes plugin scores it (integer scores, ties to the first node), and corral's
default on every trace and seed, and prints mean and sample standard deviation next to the
numbers published by Weng et al. (USENIX ATC 2023, Table/Figures 9-14, as quoted in the
simulator issue). The last line is a JSON object with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from corral.sim.alibaba import load
from corral.sim.fill import FillResult, mean_and_spread, run_fill
from corral.sim.policies import fill_scoring

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alibaba-gpu-2023"
TRACES = ("default", "gpushare40", "gpushare100", "gpuspec33", "multigpu50", "cpu050")
POLICIES = ("random", "bestfit", "fgd", "fgd-published", "corral")
PUBLISHED = {  # final allocation %, mean over seeds 42-51: Random, BestFit, FGD
    "default": (87.47, 93.08, 95.39),
    "gpushare40": (86.00, 91.69, 94.15),
    "gpushare100": (79.44, 85.01, 86.90),
    "gpuspec33": (86.46, 93.09, 94.55),
    "multigpu50": (90.27, 95.74, 97.18),
    "cpu050": (91.24, 93.79, 95.21),
}


def _run(job: tuple[str, str, str, int]) -> dict[str, object]:
    data, trace_name, policy, seed = job
    trace = load(Path(data) / "openb_node_list_gpu_node.csv",
                 Path(data) / f"openb_pod_list_{trace_name}.csv")
    result: FillResult = run_fill(trace, fill_scoring(policy, trace, seed), seed, policy)
    return result.to_json()


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def table(runs: list[dict[str, object]]) -> list[str]:
    by: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        by.setdefault((str(r["trace"]), str(r["policy"])), []).append(float(r["final_allocation_pct"]))  # type: ignore[arg-type]
    head = "| trace | " + " | ".join(POLICIES) + " | published Random / BestFit / FGD |"
    lines = [head, "|" + "---|" * (len(POLICIES) + 2)]
    for t in TRACES:
        cells = []
        for p in POLICIES:
            values = by.get((t, p), [])
            mean, spread = mean_and_spread(values)
            cells.append(f"{mean:.2f} ± {spread:.2f}" if values else "-")
        pub = " / ".join(f"{v:.2f}" for v in PUBLISHED[t])
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {pub} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--seeds", default="42-51")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--traces", default=",".join(TRACES))
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--json", default="")
    ap.add_argument("--plot", default="", help="folder for sim-fill-<trace>.png curves (seed 42)")
    args = ap.parse_args()
    jobs = [(args.data, t, p, s) for t in args.traces.split(",") for p in args.policies.split(",")
            for s in _seeds(args.seeds)]
    started = time.perf_counter()
    runs: list[dict[str, object]] = []
    with Pool(max(1, args.workers)) as pool:
        for i, r in enumerate(pool.imap_unordered(_run, jobs), start=1):
            runs.append(r)
            print(f"[{i}/{len(jobs)}] {r['trace']:12s} {r['policy']:14s} seed {r['seed']}: "
                  f"{r['final_allocation_pct']:.2f}% ({r['wall_seconds']:.1f} s)", file=sys.stderr)
    wall = time.perf_counter() - started
    runs.sort(key=lambda r: (str(r["trace"]), str(r["policy"]), int(r["seed"])))  # type: ignore[call-overload]
    for line in table(runs):
        print(line)
    if args.plot:
        from corral.sim.plots import fill_curves

        Path(args.plot).mkdir(parents=True, exist_ok=True)
        for t in args.traces.split(","):
            chosen = [r for r in runs if r["trace"] == t and r["seed"] == _seeds(args.seeds)[0]]
            fill_curves(chosen, Path(args.plot) / f"sim-fill-{t}.png", f"fill: {t} (seed {chosen[0]['seed']})")
    summary = {"benchmark": "fill_table", "wall_seconds": round(wall, 1), "workers": args.workers,
               "cpu": _cpu(), "python": platform.python_version(), "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"} | {"runs": len(runs)}))


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    return f"{model}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
