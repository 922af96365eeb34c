"""Autoscaling over three providers vs one, in the simulator (issue 11, part 5).

    python bench/autoscale_sim.py                      # 2,000 synthetic jobs, seeds 1-8
    python bench/autoscale_sim.py --tasks 500 --seeds 1
    python bench/autoscale_sim.py --placement 'balanced-fgd=1,bestfit=0.01,gpu-model=2,price=0.3'
    python bench/autoscale_sim.py --replace-min-saving -1   # no replacement (before issue 11's
                                                            # fourth pass)
    python bench/autoscale_sim.py --consolidate-min-age -1  # no emptying into free room
                                                            # (before issue 11's fifth pass)
    python bench/autoscale_sim.py --trace alibaba --tasks 1000  # the first 1,000 pods of the
                                                            # Alibaba 2023 openb trace
    python bench/autoscale_sim.py --spot-fallback count     # interrupted work on-demand after
                                                            # `spot_fallback_after` (2), the rule
                                                            # before issue 11's sixth pass
    python bench/autoscale_sim.py --no-static                # skip baseline (a)

Runs, on the same synthetic trace (offered load `--load` of a 24-node reference pool, one
shared queue, policy fifo-backfill), driven by the same pool autoscaler
(`corral.autoscale.pool`) through `corral.sim.autoscaled`:

  (c) three providers (`corral.sim.clouds.THREE_CLOUDS`: prices differ per GPU model; spot on
      two of them, with interruptions; provisioning delays differ);
  (b) the same autoscaler limited to one provider, for each provider; the cheapest of these
      runs is baseline (b);
  (a) a static pool on that cheapest provider, sized for the peak: as many instances of each
      instance type as run (b) ever had up at once (spot counted as on-demand), up for the whole
      run.

Prints one JSON line per run, then one summary line with cost(c)/cost(b), the saving and
JCT(c)/JCT(b). Costs are rented instance-hours at the offers' prices (clouds.py says which are
catalog list prices and which are assumptions).

`--trace alibaba`: the first `--tasks` pods of the Alibaba 2023 GPU trace (openb
`openb_pod_list_default.csv`, shared/data/alibaba-gpu-2023), their arrivals squeezed to the same
offered load of the same 24-node reference pool as the synthetic runs (`Trace.at_load`); its
fractional-GPU pods (0.81, 0.47 ... of a GPU) and CPU-only pods are kept as recorded.

Regimes (`--regimes`): `preemptible` (every task may be stopped, the replay's default: spot
serves all of it) and `ls-stable` (the trace's LS tasks, 30%, may not be stopped: on-demand
only). Each summary also prints the *floor* of (c) and (b): every task's GPU-hours at the
cheapest per-GPU-hour offer it may use, with no idle, no provisioning and no interruption, so
`floor_ratio_c_over_b` is the best ratio any autoscaler could reach on that trace and catalog.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from corral.autoscale.packing import eligible
from corral.autoscale.pool import AutoscalerConfig
from corral.core.model import STABLE_CAPACITY, Workload
from corral.sim import alibaba
from corral.sim.autoscaled import AutoscaleOptions, run_autoscaled
from corral.sim.clouds import THREE_CLOUDS, SimProvider
from corral.sim.policies import replay_policy
from corral.sim.synthetic import SyntheticSpec, synthetic_trace
from corral.sim.trace import Trace

ALIBABA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alibaba-gpu-2023"
REGIMES = {"preemptible": (), "ls-stable": ("LS",)}

FIELDS = ("cost", "cost_by_provider", "completed", "never_started", "jct_s", "gpu_hours_rented",
          "gpu_hours_used", "gpu_hours_idle", "spot_interruptions", "instances", "makespan_s")


def one(label: str, trace, policy, options: AutoscaleOptions, seed: int) -> dict[str, object]:
    started = time.perf_counter()
    report = run_autoscaled(trace, policy, options, seed=seed).report
    row = {"run": label, "seed": seed, **{k: report[k] for k in FIELDS},
           "peak_instances": report["peak_instances"],
           "wall_s": round(time.perf_counter() - started, 2)}
    jct = report["jct_s"]
    row["jct_s"] = {k: round(float(jct[k]), 1) for k in ("avg", "median", "p95")}  # type: ignore[index]
    print(json.dumps(row), flush=True)
    return row


def on_demand(peaks: dict[str, int]) -> dict[str, int]:
    """The peak instances of each offer, spot counted as on-demand of the same type and zone:
    a static pool owns its machines for the whole run (a spot node taken back would not return)."""
    out: dict[str, int] = {}
    for key, n in peaks.items():
        stable = key.replace("/spot/", "/on-demand/")
        out[stable] = out.get(stable, 0) + n
    return out


def floor(trace: Trace, providers: tuple[SimProvider, ...], stable_qos: tuple[str, ...]) -> float:
    """The least any autoscaler could pay: each task's GPU-hours (CPU-only tasks: their share of
    the instance's CPU or RAM) at the cheapest offer it may use, perfectly packed, never idle."""
    offers = [o for p in providers for o in p.offers]
    total = 0.0
    for t in trace.tasks:
        w = Workload(t.name, "q", t.resources(), workers=t.workers, gpu_models=t.gpu_models,
                     preemptible=t.qos not in stable_qos)
        kinds = w.allowed_capacity if w.preemptible else STABLE_CAPACITY
        r = w.resources
        share = r.gpus or r.nominal_milli() / 1000
        rates = [float(o.price_per_hour) * (share / o.gpus if share else
                                            max(r.cpu_milli / o.cpu_milli, r.memory_mib / o.memory_mib))
                 for o in offers if eligible(w, o, kinds) is None]
        total += min(rates) * float(t.duration or 0.0) / 3600.0 * max(t.workers, 1)
    return round(total, 2)


def alibaba_head(data: Path, tasks: int, reference: Trace, load: float) -> Trace:
    """The first `tasks` pods of the openb trace at `load` of the reference pool's nodes."""
    full = alibaba.load(data / "openb_node_list_gpu_node.csv",
                        data / "openb_pod_list_default.csv")
    head = sorted(full.tasks, key=lambda t: (t.submitted, t.name))[:tasks]
    return Trace(f"alibaba-{full.name}-{tasks}", reference.nodes, tuple(head),
                 full.notes).at_load(load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    ap.add_argument("--placement", default="corral")
    ap.add_argument("--idle-timeout", type=float, default=600.0)
    ap.add_argument("--move-premium", type=float, default=AutoscalerConfig().move_premium,
                    help="after an interruption, how much dearer another place may be "
                         "(1e9: always move, the policy before issue 11's last pass)")
    ap.add_argument("--cancel-unneeded-after", type=float,
                    default=AutoscalerConfig().cancel_unneeded_after_s,
                    help="return an instance on its way that no waiting work needs after this "
                         "many seconds (default: the policy's, 60; < 0: never)")
    ap.add_argument("--replace-min-saving", type=float, default=AutoscalerConfig().replace_min_saving,
                    help="replace a node whose preemptible work fits one instance costing at "
                         "most (1 - this) of it (Karpenter's consolidation); < 0: never")
    ap.add_argument("--replace-min-age", type=float, default=AutoscalerConfig().replace_min_age_s,
                    help="a node launched less than this many seconds ago is not replaced")
    ap.add_argument("--consolidate-min-age", type=float,
                    default=AutoscalerConfig().consolidate_min_age_s,
                    help="empty a node launched at least this many seconds ago whose preemptible "
                         "work fits the other nodes' free room (Karpenter's consolidation "
                         "'delete'); < 0: never (before issue 11's fifth pass)")
    ap.add_argument("--spot-fallback", choices=("weigh", "count"), default="weigh",
                    help="weigh: interrupted work stays on spot while it costs less with its "
                         "interruptions counted (corral.autoscale.spot); count: on-demand after "
                         "spot_fallback_after interruptions")
    ap.add_argument("--no-static", action="store_true", help="skip baseline (a)")
    ap.add_argument("--trace", choices=("synthetic", "alibaba"), default="synthetic")
    ap.add_argument("--data", default=str(ALIBABA), help="the Alibaba openb trace's folder")
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    args = ap.parse_args()
    saving = args.replace_min_saving if args.replace_min_saving >= 0 else None
    # before 4th pass the default here was None (never), not the policy's 60 s as its help said
    cancel = args.cancel_unneeded_after if args.cancel_unneeded_after >= 0 else None
    config = AutoscalerConfig(idle_timeout_s=args.idle_timeout, move_premium=args.move_premium,
                              cancel_unneeded_after_s=cancel,
                              replace_min_saving=saving, replace_min_age_s=args.replace_min_age,
                              consolidate_min_age_s=(args.consolidate_min_age
                                                     if args.consolidate_min_age >= 0 else None))
    for regime in args.regimes:
        run_regime(args, config, regime)


def run_regime(args: argparse.Namespace, config: AutoscalerConfig, regime: str) -> None:
    stable = REGIMES[regime]
    summary: list[dict[str, object]] = []
    for seed in args.seeds:
        trace = synthetic_trace(SyntheticSpec(tasks=args.tasks, nodes=24, load=args.load, seed=seed))
        if args.trace == "alibaba":
            trace = alibaba_head(Path(args.data), args.tasks, trace, args.load)
        policy = replay_policy("fifo-backfill", args.placement, trace)
        weigh = args.spot_fallback == "weigh"
        multi = one("c:three-clouds", trace, policy,
                    AutoscaleOptions(THREE_CLOUDS, config, stable_qos=stable,
                                     weigh_interruptions=weigh), seed)
        singles = [one(f"b:{p.name}", trace, policy,
                       AutoscaleOptions((p,), config, stable_qos=stable,
                                        weigh_interruptions=weigh), seed)
                   for p in THREE_CLOUDS]
        best = min(singles, key=lambda r: float(r["cost"]))  # type: ignore[arg-type]
        provider = next(p for p in THREE_CLOUDS if f"b:{p.name}" == best["run"])
        static = {"cost": None, "jct_s": {"avg": None}} if args.no_static else one(
            f"a:static-{provider.name}", trace, policy,
            AutoscaleOptions((provider,), config, static=True, stable_qos=stable,
                             static_pool=on_demand(best["peak_instances"])), seed)  # type: ignore[arg-type]
        ratio = float(multi["cost"]) / float(best["cost"])  # type: ignore[arg-type]
        jct = multi["jct_s"]["avg"] / best["jct_s"]["avg"]  # type: ignore[index]
        floor_c, floor_b = floor(trace, THREE_CLOUDS, stable), floor(trace, (provider,), stable)
        summary.append({"regime": regime, "seed": seed, "cheapest_single": provider.name,
                        "floor_c": floor_c, "floor_b": floor_b,
                        "floor_ratio_c_over_b": round(floor_c / floor_b, 4),
                        "cost_c": multi["cost"], "cost_b": best["cost"], "cost_a": static["cost"],
                        "cost_ratio_c_over_b": round(ratio, 4),
                        "saving_vs_b_pct": round(100 * (1 - ratio), 1),
                        "saving_vs_a_pct": None if args.no_static else round(
                            100 * (1 - float(multi["cost"])  # type: ignore[arg-type]
                                   / float(static["cost"])), 1),  # type: ignore[arg-type]
                        "jct_avg_ratio_c_over_b": round(jct, 4),
                        "interruptions_c": multi["spot_interruptions"],
                        "fell_back_c": multi["instances"].get("fell_back_to_on_demand", 0),  # type: ignore[attr-defined]
                        "jct_avg_c_b_a": [multi["jct_s"]["avg"], best["jct_s"]["avg"],  # type: ignore[index]
                                          static["jct_s"]["avg"]]})  # type: ignore[index]
        print(json.dumps({"summary": summary[-1]}), flush=True)
    for s in summary:  # one line a seed, to read the spread at a glance
        print(f"{regime} seed {s['seed']}: (c)/(b) {s['cost_ratio_c_over_b']} vs "
              f"{s['cheapest_single']}, JCT {s['jct_avg_ratio_c_over_b']}, "
              f"interruptions {s['interruptions_c']}, fell back {s['fell_back_c']}", flush=True)
    ratios = [float(s["cost_ratio_c_over_b"]) for s in summary]  # type: ignore[arg-type]
    print(json.dumps({"regime": regime, "cost_ratio_c_over_b_mean": round(sum(ratios) / len(ratios), 4),
                      "target": "<= 0.70 at equal or better average JCT"}), flush=True)


if __name__ == "__main__":
    main()
