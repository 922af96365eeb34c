"""Gavel's traces through corral: heterogeneity-blind and -aware JCT, against Gavel's simulator.

    .venv/bin/python bench/gavel.py                       # every trace, loads x1 x4 x8
    .venv/bin/python bench/gavel.py --traces 2869ce --speedups 8
    .venv/bin/python bench/gavel.py --convert /tmp/gavel-conv   # inputs for Gavel's simulator
    .venv/bin/python bench/gavel.py --gavel-logs /tmp/gavel-conv/out  # add Gavel's figures

For each trace and load it prints one row per policy: average and p95 JCT (hours), the lower
bound (each job alone on its fastest type) and, with `--gavel-logs`, Gavel's own
`fifo_perf` and `max_min_fairness_perf` on the same converted trace (logs named
`{trace}-x{speedup}-{policy}.log`, the stdout of its simulate_scheduler_with_trace.py with
`-c 36:36:36 --seed 0 --throughputs_file <converted>/throughputs.json`). Rules: corral.sim.gavel
and corral.sim.gavel_replay; results: docs/simulator.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from corral.sim.gavel import (
    DEFAULT_CLUSTER,
    Throughputs,
    at_speedup,
    load_trace,
    percentile,
    read_gavel_log,
    runnable,
    write_converted,
    write_throughputs,
)
from corral.sim.gavel_replay import POLICIES, replay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gavel"
GAVEL_POLICIES = ("fifo_perf", "max_min_fairness_perf")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--traces", default="", help="comma-separated trace names (default: all)")
    ap.add_argument("--speedups", default="1,4,8")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--restart-s", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--convert", type=Path, help="write Gavel-format traces and throughputs here")
    ap.add_argument("--gavel-logs", type=Path, help="read Gavel's simulator output from here")
    ap.add_argument("--json", type=Path, help="write every row as JSON lines here")
    args = ap.parse_args(argv)

    throughputs = Throughputs.load(args.data / "simulation_throughputs.json")
    files = sorted((args.data / "msr-seed0").glob("*.trace"))
    wanted = {t for t in args.traces.split(",") if t}
    files = [f for f in files if not wanted or f.stem in wanted]
    speedups = [float(s) for s in args.speedups.split(",")]
    rows: list[dict[str, object]] = []
    every: list = []
    for f in files:
        jobs, dropped = runnable(load_trace(f), DEFAULT_CLUSTER)
        every.extend(jobs)
        for s in speedups:
            loaded = at_speedup(jobs, s)
            tag = f"{f.stem}-x{s:g}"
            if args.convert:
                args.convert.mkdir(parents=True, exist_ok=True)
                write_converted(loaded, args.convert / f"{tag}.trace")
            if not args.policies:
                continue
            for name in args.policies.split(","):
                r = replay(loaded, throughputs, name, args.seed, args.restart_s)
                row = {"trace": f.stem, "speedup": s, "dropped_too_large": dropped, **r}
                rows.append(row)
                _print(row)
            for gp in GAVEL_POLICIES if args.gavel_logs else ():
                jct = read_gavel_log(args.gavel_logs / f"{tag}-{gp}.log")
                row = {"trace": f.stem, "speedup": s, "policy": f"gavel:{gp}",
                       "jobs": len(jobs), "completed": len(jct) if jct else 0,
                       "avg_jct_h": round(sum(jct) / len(jct) / 3600, 4) if jct else None,
                       "p95_jct_h": round(percentile(jct, 95) / 3600, 4) if jct else None}
                rows.append(row)
                _print(row)
    if args.convert:
        write_throughputs(args.data / "simulation_throughputs.json", every,
                          args.convert / "throughputs.json")
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


def _print(row: dict[str, object]) -> None:
    def h(v: object) -> str:
        return f"{v:9.3f}" if isinstance(v, float) else f"{'-':>9}"

    print(f"{row['trace']:>7} x{row['speedup']:<3g} {row['policy']:<28} jobs {row['jobs']:>5} "
          f"done {row['completed']:>5}  avg {h(row.get('avg_jct_h'))} h  "
          f"p95 {h(row.get('p95_jct_h'))} h  bound avg {h(row.get('bound_avg_jct_h'))} h  "
          f"p95 {h(row.get('bound_p95_jct_h'))} h  moves {row.get('migrations', '-')}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
