"""`corral simulate`: run traces through the scheduling core on a simulated clock.

    corral simulate fill    --nodes N.csv --pods P.csv --policy corral --seed 42 --json out.json
    corral simulate replay  --nodes N.csv --pods P.csv --policy corral --seed 42 --json out.json
    corral simulate compare --nodes N.csv --pods P.csv --policies random,bestfit,corral --seeds 42-44
    corral simulate serve   --trace AzureLLMInferenceTrace_conv.csv --profile a100 --json out.json

Thin: parsing, progress and printing here; every decision is in corral.sim and corral.core.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from corral.sim.failures import FailureModel
from corral.sim.fill import TARGET_RATIO, mean_and_spread, run_fill
from corral.sim.load import load_trace
from corral.sim.policies import (
    REPLAY_POLICIES,
    PolicyError,
    ReplayPolicy,
    fill_scoring,
    replay_policy,
)
from corral.sim.replay import ReplayOptions, ReplayResult, run_replay
from corral.sim.synthetic import SyntheticSpec, synthetic_trace
from corral.sim.trace import Trace, TraceFormatError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Replay cluster traces through corral's scheduling core.")
console = Console(stderr=True)

NodesOpt = Annotated[Path | None, typer.Option("--nodes", help="node list CSV (openb or generic)")]
PodsOpt = Annotated[Path | None, typer.Option("--pods", help="task list CSV (openb or generic)")]
SynthOpt = Annotated[int, typer.Option("--synthetic", help="instead of files: N synthetic tasks")]
SynthNodesOpt = Annotated[int, typer.Option("--synthetic-nodes", help="nodes of the synthetic pool")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed for every random choice")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="write the figures here (JSON)")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="write a PNG plot here")]


class _UserError(Exception):
    """A mistake in the command line or the input files: printed, never a traceback."""


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except (TraceFormatError, PolicyError, ValueError, _UserError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


def _trace(nodes: Path | None, pods: Path | None, synthetic: int, synthetic_nodes: int,
           seed: int) -> Trace:
    if synthetic:
        return synthetic_trace(SyntheticSpec(tasks=synthetic, nodes=synthetic_nodes, seed=seed))
    if nodes is None or pods is None:
        raise _UserError("give --nodes and --pods (trace files), or --synthetic N")
    return load_trace(nodes, pods)


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _write_json(path: Path | None, data: object) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        console.print(f"wrote {path}")


@app.command()
def fill(
    nodes: NodesOpt = None,
    pods: PodsOpt = None,
    policy: Annotated[str, typer.Option(help="placement policy: random, bestfit, fgd, "
                                             "fgd-published, corral, any score plugin, or a mix "
                                             "like 'fgd=1,bestfit=0.01'")] = "corral",
    seed: SeedOpt = 42,
    json_out: JsonOpt = None,
    plot: PlotOpt = None,
    target: Annotated[float, typer.Option(help="stop adding tasks at this demand / capacity")] = TARGET_RATIO,
    synthetic: SynthOpt = 0,
    synthetic_nodes: SynthNodesOpt = 96,
) -> None:
    """Fill an empty pool one task at a time (no queue, no departures); GPU allocation ratio."""
    with _user_errors():
        trace = _trace(nodes, pods, synthetic, synthetic_nodes, seed)
        scoring = fill_scoring(policy, trace, seed)
        with _progress(f"fill {trace.name} / {policy}") as update:
            result = run_fill(trace, scoring, seed, policy, target, update)
    data = result.to_json()
    table = Table(title=f"fill: {trace.name}, seed {seed}")
    for col in ("policy", "tasks", "placed", "failed", "final allocation %", "wall s"):
        table.add_column(col, justify="right" if col != "policy" else "left")
    table.add_row(policy, str(result.tasks), str(result.placed), str(result.failed),
                  f"{result.final_allocation_pct:.2f}", f"{result.wall_seconds:.2f}")
    Console().print(table)
    _write_json(json_out, data)
    if plot is not None:
        with _user_errors():
            from corral.sim.plots import PlotUnavailable, fill_curves

            try:
                console.print(f"wrote {fill_curves([data], plot, f'fill: {trace.name} (seed {seed})')}")
            except PlotUnavailable as e:
                raise _UserError(str(e)) from None


def _replay_options(queues: str, teams: int, quota_fraction: float, interval: float,
                    load: float | None, pool_fraction: float, prices: list[str],
                    mtbf: float | None, repair: float,
                    spot_fraction: float, spot_mtbi: float | None, spot_notice: float,
                    checkpoint: float | None, gpu_mtbf: float | None = None,
                    gpu_fault: float = 600.0, gpu_recover: float = 600.0,
                    node_cordons: bool = False) -> ReplayOptions:
    price_map: dict[str, float] = {}
    for item in prices:
        model, _, value = item.partition("=")
        try:
            price_map[model.strip()] = float(value)
        except ValueError:
            raise _UserError(f"--price wants MODEL=PRICE (per GPU-hour), got {item!r}") from None
    failures = FailureModel(node_mtbf_s=mtbf, node_repair_s=repair, spot_fraction=spot_fraction,
                            spot_mtbi_s=spot_mtbi, spot_notice_s=spot_notice,
                            checkpoint_interval_s=checkpoint, gpu_mtbf_s=gpu_mtbf,
                            gpu_fault_s=gpu_fault, gpu_recover_after_s=gpu_recover,
                            device_cordons=not node_cordons)
    return ReplayOptions(queues=queues, teams=teams, quota_fraction=quota_fraction,
                         failures=failures, prices=price_map, interval_s=interval, load=load,
                         pool_fraction=pool_fraction)


@app.command()
def replay(
    nodes: NodesOpt = None,
    pods: PodsOpt = None,
    policy: Annotated[str, typer.Option(help=f"queueing policy: {', '.join(REPLAY_POLICIES)}")] = "corral",
    placement: Annotated[str, typer.Option(help="placement policy (as for fill)")] = "corral",
    seed: SeedOpt = 42,
    json_out: JsonOpt = None,
    plot: PlotOpt = None,
    queues: Annotated[str, typer.Option(help="tasks to queues: teams, qos or trace")] = "teams",
    teams: Annotated[int, typer.Option(help="number of teams for --queues teams")] = 4,
    quota_fraction: Annotated[float, typer.Option(help="share of the pool given out as quotas")] = 0.8,
    interval: Annotated[float, typer.Option(help="seconds between cycles (0: at every event)")] = 0.0,
    load: Annotated[float | None, typer.Option(help="squeeze arrivals to this offered load")] = None,
    pool_fraction: Annotated[float, typer.Option(help="keep this share of the nodes")] = 1.0,
    price: Annotated[list[str], typer.Option(help="MODEL=PRICE per GPU-hour (repeatable)")] = [],  # noqa: B006
    node_mtbf: Annotated[float | None, typer.Option(help="node mean time between failures, s")] = None,
    node_repair: Annotated[float, typer.Option(help="node repair time, s")] = 4 * 3600.0,
    spot_fraction: Annotated[float, typer.Option(help="share of nodes that are spot")] = 0.0,
    spot_mtbi: Annotated[float | None, typer.Option(help="spot mean time between interruptions, s")] = None,
    spot_notice: Annotated[float, typer.Option(help="spot interruption notice, s")] = 120.0,
    checkpoint: Annotated[float | None, typer.Option(help="checkpoint interval of tasks, s")] = None,
    gpu_mtbf: Annotated[float | None, typer.Option(
        help="each GPU's mean time between faults, s (corral.sim.device_faults)")] = None,
    gpu_fault: Annotated[float, typer.Option(help="seconds a faulty GPU reports sick")] = 600.0,
    gpu_recover: Annotated[float, typer.Option(
        help="seconds a GPU must be healthy again before it takes work")] = 600.0,
    node_cordons: Annotated[bool, typer.Option(
        help="a GPU fault cordons its whole node (default: only the GPU)")] = False,
    synthetic: SynthOpt = 0,
    synthetic_nodes: SynthNodesOpt = 96,
    providers: Annotated[str | None, typer.Option(
        help="rent capacity from simulated providers through the pool autoscaler instead of "
             "the trace's pool: three-clouds, or a comma-separated subset (aws,gcp,lambda); "
             "see corral.sim.clouds")] = None,
    idle_timeout: Annotated[float, typer.Option(
        help="with --providers: seconds a node stays idle before it is returned")] = 600.0,
) -> None:
    """Replay a trace in time: arrivals, waiting, departures, failures; JCT, shares, cost."""
    with _user_errors():
        trace = _trace(nodes, pods, synthetic, synthetic_nodes, seed)
        options = _replay_options(queues, teams, quota_fraction, interval, load, pool_fraction,
                                  price, node_mtbf,
                                  node_repair, spot_fraction, spot_mtbi, spot_notice, checkpoint,
                                  gpu_mtbf, gpu_fault, gpu_recover, node_cordons)
        chosen = replay_policy(policy, placement, trace)
        if providers is not None:
            result = _autoscaled(trace, chosen, providers, idle_timeout, seed, options)
        else:
            with _progress(f"replay {trace.name} / {policy}") as update:
                result = run_replay(trace, chosen, seed, options, update)
    Console().print(_replay_table([result.report]))
    _write_json(json_out, result.report | {"series": result.series})
    if plot is not None:
        _plot_replay({policy: result.series}, plot, f"replay: {trace.name}")


def _autoscaled(trace: Trace, policy: ReplayPolicy, providers: str, idle_timeout: float,
                seed: int, options: ReplayOptions) -> ReplayResult:
    from corral.autoscale.pool import AutoscalerConfig
    from corral.sim.autoscaled import AutoscaleOptions, run_autoscaled
    from corral.sim.clouds import cloud_set

    try:
        clouds = cloud_set(providers)
    except ValueError as e:
        raise _UserError(f"--providers: {e}") from None
    scale = AutoscaleOptions(clouds, AutoscalerConfig(idle_timeout_s=idle_timeout))
    return run_autoscaled(trace, policy, scale, seed, options)


def _replay_table(reports: list[dict[str, Any]]) -> Table:
    table = Table(title="replay")
    cols = ("policy", "seed", "JCT avg s", "JCT p95 s", "wait avg s", "wait p99 s", "makespan h",
            "alloc %", "Jain", "preempt", "cost", "goodput %")
    for col in cols:
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in reports:
        table.add_row(r["policy"], str(r["seed"]), f"{r['jct_s']['avg']:.0f}",
                      f"{r['jct_s']['p95']:.0f}", f"{r['wait_s']['avg']:.1f}",
                      f"{r['wait_s']['p99']:.0f}", f"{r['makespan_s'] / 3600:.1f}",
                      f"{r['gpu_allocation_pct']:.2f}", f"{r['jain_index']:.3f}",
                      str(r["preemptions"]), f"{r['cost']:.0f}", f"{r['goodput_pct']:.2f}")
    return table


def _plot_replay(series: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    with _user_errors():
        from corral.sim.plots import PlotUnavailable, replay_timeline

        try:
            console.print(f"wrote {replay_timeline(series, path, title)}")
        except PlotUnavailable as e:
            raise _UserError(str(e)) from None


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise _UserError(f"--seeds wants numbers and ranges like 42-51,60, got {text!r}") from None
    return out


@app.command()
def compare(
    nodes: NodesOpt = None,
    pods: PodsOpt = None,
    experiment: Annotated[str, typer.Option(help="fill or replay")] = "fill",
    policies: Annotated[str, typer.Option(help="comma-separated policy names")] = "random,bestfit,fgd,corral",
    seeds: Annotated[str, typer.Option(help="seeds, like 42-51 or 42,43")] = "42-44",
    placement: Annotated[str, typer.Option(help="replay: placement policy")] = "corral",
    load: Annotated[float | None, typer.Option(help="replay: squeeze arrivals to this load")] = None,
    pool_fraction: Annotated[float, typer.Option(help="replay: keep this share of the nodes")] = 1.0,
    queues: Annotated[str, typer.Option(help="replay: teams, qos or trace")] = "teams",
    json_out: JsonOpt = None,
    plot: PlotOpt = None,
    synthetic: SynthOpt = 0,
    synthetic_nodes: SynthNodesOpt = 96,
) -> None:
    """Run several policies and seeds; print one table (mean ± spread over seeds)."""
    with _user_errors():
        if experiment not in ("fill", "replay"):
            raise _UserError(f"--experiment must be fill or replay, got {experiment!r}")
        names = [p.strip() for p in policies.split(",") if p.strip()]
        seed_list = _seeds(seeds)
        trace = _trace(nodes, pods, synthetic, synthetic_nodes, seed_list[0])
        runs: list[dict[str, Any]] = []
        series: dict[str, dict[str, list[float]]] = {}
        with _progress(f"compare {experiment} on {trace.name}") as update:
            for i, (name, seed) in enumerate((n, s) for n in names for s in seed_list):
                if experiment == "fill":
                    run = run_fill(trace, fill_scoring(name, trace, seed), seed, name).to_json()
                    runs.append(run | {"requested": name})
                else:
                    result = run_replay(trace, replay_policy(name, placement, trace), seed,
                                        ReplayOptions(queues=queues, load=load,
                                                      pool_fraction=pool_fraction))
                    runs.append(result.report | {"requested": name})
                    series.setdefault(name, result.series)
                update(i + 1, len(names) * len(seed_list))
    Console().print(_compare_table(experiment, names, runs))
    _write_json(json_out, {"experiment": experiment, "trace": trace.name, "runs": runs})
    if plot is not None and experiment == "replay":
        _plot_replay(series, plot, f"replay: {trace.name}")
    elif plot is not None:
        with _user_errors():
            from corral.sim.plots import fill_curves

            first = [r for r in runs if r["seed"] == seed_list[0]]
            console.print(f"wrote {fill_curves(first, plot, f'fill: {trace.name} (seed {seed_list[0]})')}")


_AZURE_LLM = Path("../shared/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv")


@app.command()
def serve(
    trace: Annotated[Path, typer.Option(help="Azure LLM inference trace CSV "
                                             "(TIMESTAMP, ContextTokens, GeneratedTokens)")] = _AZURE_LLM,
    profile: Annotated[str, typer.Option(help="replica GPU type: a100 or h100 "
                                              "(corral.sim.serve_model)")] = "a100",
    policies: Annotated[str, typer.Option(help="comma-separated: static-peak, static-mean, "
                                               "static-best, hpa, kpa, corral")] = "static-peak,static-mean,static-best,hpa,kpa,corral",
    start: Annotated[float, typer.Option(help="window start, s from the first request")] = 0.0,
    duration: Annotated[float | None, typer.Option(help="window length, s (default: to the end)")] = None,
    slo_ttft: Annotated[float, typer.Option(help="SLO: time to first token at most this, s")] = 2.0,
    utilization: Annotated[float, typer.Option(help="autoscalers aim at this share of the "
                                                    "per-replica target")] = 0.8,
    cold_start: Annotated[float | None, typer.Option(help="replica start-up delay, s "
                                                          "(default: the profile's)")] = None,
    warmup: Annotated[float, typer.Option(help="seconds at the start not counted")] = 300.0,
    latency_target: Annotated[float | None, typer.Option(
        help="corral also tracks p99 time to first token <= this, s")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="instead of --trace: a seeded "
                                            "3x step burst (serve_trace.STEP_BURST)")] = False,
    seed: SeedOpt = 42,
    json_out: JsonOpt = None,
) -> None:
    """Replay LLM request arrivals through static provisioning and autoscalers; SLO and cost."""
    import dataclasses

    from corral.sim.serve import POLICIES, ServeOptions, compare_serving
    from corral.sim.serve_model import PROFILES
    from corral.sim.serve_trace import load_requests, synthetic_requests

    with _user_errors():
        if profile not in PROFILES:
            raise _UserError(f"--profile: one of {', '.join(PROFILES)}, got {profile!r}")
        names = tuple(p.strip() for p in policies.split(",") if p.strip())
        unknown = [n for n in names if n not in POLICIES]
        if unknown or not names:
            raise _UserError(f"--policies: choose from {', '.join(POLICIES)}, got {policies!r}")
        if not synthetic and not trace.is_file():
            raise _UserError(f"--trace: no file at {trace}")
        prof = PROFILES[profile]
        if cold_start is not None:
            prof = dataclasses.replace(prof, cold_start_s=cold_start)
        requests = (synthetic_requests(seed) if synthetic else load_requests(trace)).window(
            start, duration)
        opts = ServeOptions(prof, slo_ttft_s=slo_ttft, target_utilization=utilization,
                            warmup_s=warmup, latency_target_s=latency_target, seed=seed)
        with _progress(f"serve {requests.name} / {profile}") as update:
            data = compare_serving(requests, opts, names, update)
    Console().print(_serve_table(data))
    bound = data["hindsight_of_peak_pct"]
    Console().print(f"lower bound for >= {data['slo_target_pct']:g}% within the SLO (waits within "
                    f"the TTFT budget, the slack, cold starts; corral.sim.serve_bound): "
                    f"{data['slo_bound_of_peak_pct']}% of static-peak's replica-hours")
    Console().print(f"hindsight oracle (every request served at once, no slack, no cold start; "
                    f"not a bound): {bound['10s']}% resizing every 10 s, {bound['60s']}% every "
                    f"60 s")
    _write_json(json_out, data)


def _serve_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"serve: {data['trace']}, {data['profile']}, SLO TTFT <= "
                        f"{data['slo_ttft_s']:g} s for {data['slo_target_pct']:g}% of requests")
    cols = ("policy", "within SLO %", "TTFT p99 s", "replica-h", "% of peak", "cost",
            "cold starts", "max replicas")
    for col in cols:
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in data["runs"]:
        table.add_row(r["policy"], f"{r['within_slo_pct']:.2f}", f"{r['ttft_p99_s']:.2f}",
                      f"{r['replica_hours']:.2f}", f"{r['of_peak_pct']:.1f}", f"{r['cost']:.2f}",
                      str(r["cold_starts"]), str(r["max_replicas"]))
    return table

Metric = tuple[str, Callable[[dict[str, Any]], float]]
_FILL_METRICS: list[Metric] = [
    ("final allocation %", lambda r: r["final_allocation_pct"]),
    ("wall s", lambda r: r["wall_seconds"]),
]
_REPLAY_METRICS: list[Metric] = [
    ("JCT avg s", lambda r: r["jct_s"]["avg"]),
    ("wait avg s", lambda r: r["wait_s"]["avg"]),
    ("wait p99 s", lambda r: r["wait_s"]["p99"]),
    ("alloc %", lambda r: r["gpu_allocation_pct"]),
    ("Jain", lambda r: r["jain_index"]),
    ("preemptions", lambda r: r["preemptions"]),
]


def _compare_table(experiment: str, names: list[str], runs: list[dict[str, Any]]) -> Table:
    metrics = _FILL_METRICS if experiment == "fill" else _REPLAY_METRICS
    table = Table(title=f"{experiment}: mean ± spread over seeds")
    table.add_column("policy")
    for label, _ in metrics:
        table.add_column(label, justify="right")
    for name in names:
        mine = [r for r in runs if r.get("requested") == name]
        cells = []
        for _, get in metrics:
            mean, spread = mean_and_spread([float(get(r)) for r in mine])
            cells.append(f"{mean:.2f} ± {spread:.2f}")
        table.add_row(name, *cells)
    return table
