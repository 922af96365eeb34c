"""`corral plan POOL WORKLOADS`: a dry run of one scheduling cycle, printed as tables.

Reads the pool and workload files, asks the core for a plan at `--now` (default: the wall clock;
the CLI may read it, the core may not) and shows what would start where, what would be evicted and
why, and for every pending workload its reason. A big workload that yields to a reservation is
told whose and until when, "(now: it waits behind nodes reserved for g1 until t=1000)", from the
plan's own reservations, in the words the API adds to a stored sentence (`told`): the core's
sentence names no holder, since a stored one would be rewritten each time reservations move.

An elastic job (`elastic: {min_workers, max_workers}`) is planned as the control plane stores it
(`corral.control.elastic`): its core gang `NAME` of min_workers and one-worker extras `NAME-e1`..,
below every job's priority, through the same `unit_ids` and `extra_unit` the control plane and
its dry run use; never as one gang of min or max workers. With `running:`, `placed_on` lists the
world's workers, core gang first, then the extras in order; extras not running wait until
`resize_interval` has passed since the world last changed (`running.started_ago`: a resize
restarts every worker), as the control plane holds them. Without it the extras are held for
their core gang, as the control plane stores a new submission: placed with it when it is
placed, waiting with it (ElasticWaitsForGang) when it waits (`elastic_plan.settle`). Held
extras are listed among the pending with their reason. The plan ends with each elastic job's
world after the cycle (`elastic_plan`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.elastic_plan import (
    ElasticWorld,
    elastic_units,
    elastic_worlds,
    settle,
    unit_names,
    with_holds,
)
from corral.core import ClusterState, Plan, WorkerAssignment, Workload, WorkloadState, schedule
from corral.core.model import Node
from corral.core.reasons import Reason, reason_with_reservations
from corral.spec import SpecError, load_pool, load_workloads
from corral.spec.load import WorkloadEntry


def build_state(pool_path: Path, workloads_path: Path, now: float) -> tuple[ClusterState, Any]:
    state, pool, _, _ = read_files(pool_path, workloads_path, now)
    return state, pool


def read_files(pool_path: Path, workloads_path: Path, now: float
               ) -> tuple[ClusterState, Any, list[WorkloadEntry], dict[str, Reason]]:
    """The cycle's state, the pool spec, the workload entries it was made from, and the
    elastic extras held out of the cycle with why (`elastic_plan.elastic_units`)."""
    pool = load_pool(pool_path)
    entries = load_workloads(workloads_path)
    nodes = pool.nodes()
    by_id = {n.id: n for n in nodes}
    queues = {q.name for q in pool.queues}
    problems = [
        (
            f"workloads[{i}].queue",
            f"queue {e.queue!r} is not defined in {pool_path}; "
            f"defined: {', '.join(sorted(queues)) or 'none'}",
        )
        for i, e in enumerate(entries)
        if e.queue not in queues
    ]
    seen: set[str] = set()
    for i, e in enumerate(entries):
        for name in unit_names(e):  # an elastic job's extras are NAME-e1..
            if name in seen:
                problems.append(
                    (f"workloads[{i}].name", f"{name!r} is used twice; names must be unique")
                )
            seen.add(name)
    if problems:
        raise SpecError(problems, str(workloads_path))
    workloads: list[Workload] = []
    held: dict[str, Reason] = {}
    for i, e in enumerate(entries):
        if e.elastic is not None:
            units, holds = _elastic(e, i, by_id, now)
            workloads += units
            held.update(holds)
            continue
        for w in e.to_core(e.name, now - e.submitted_ago):
            workloads.append(_running(w, e, i, by_id, now) if e.running else w)
    state = ClusterState(tuple(nodes), tuple(pool.queues_core()), tuple(workloads))
    return state, pool, entries, held


def _elastic(e: WorkloadEntry, i: int, nodes: dict[str, Node], now: float
             ) -> tuple[list[Workload], dict[str, Reason]]:
    running = (lambda w, k: _running(w, e, i, nodes, now, k)) if e.running else None
    return elastic_units(e, i, now, running)


def _running(w: Workload, e: WorkloadEntry, i: int, nodes: dict[str, Node], now: float,
             first: int = 0) -> Workload:
    """`w` running where `e.running.placed_on` says, from its entry `first` (an elastic job's
    extra: its own worker in the world's list) for `w.workers` entries."""
    assert e.running is not None
    r = w.resources
    out: list[WorkerAssignment] = []
    placed = e.running.placed_on if e.elastic is None else e.running.placed_on[
        first:first + w.workers]
    for k, where in enumerate(placed, start=first):
        node = nodes.get(str(where.get("node")))
        if node is None:
            raise SpecError(
                [
                    (
                        f"workloads[{i}].running.placed_on[{k}].node",
                        f"node {where.get('node')!r} is not in the pool",
                    )
                ]
            )
        devices = tuple(int(d) for d in where.get("devices", []))
        milli = r.nominal_milli(node.gpu_memory_mib) if r.fractional else 1000 if devices else 0
        mem = (
            node.gpu_memory_mib
            if r.gpus
            else max(r.gpu_memory_mib, node.gpu_memory_mib * r.gpu_milli // 1000)
        )
        out.append(WorkerAssignment(k - first, node.id, devices, milli, mem))
    if len(out) != w.workers:
        raise SpecError(
            [
                (
                    f"workloads[{i}].running.placed_on",
                    f"lists {len(out)} workers; the workload has {w.workers}",
                )
            ]
        )
    return Workload(
        **{
            **{f: getattr(w, f) for f in w.__dataclass_fields__},
            "state": WorkloadState.RUNNING,
            "started_at": now - e.running.started_ago,
            "assignments": tuple(out),
        }
    )


def plan_command(
    pool: Annotated[Path, typer.Argument(help="pool file: providers, node groups, queues")],
    workloads: Annotated[Path, typer.Argument(help="workloads file: jobs, services, sessions")],
    now: Annotated[
        float | None, typer.Option(help="the cycle's time (unix seconds); default: now")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for tie-breaking plugins")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Dry run: show where the workloads would run, what would be evicted, and why the rest waits."""
    console = Console()
    at = time.time() if now is None else now
    try:
        state, spec, entries, holds = read_files(pool, workloads, at)
    except SpecError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    config = spec.scheduler.to_core()
    # elastic extras held as the live loop holds them (for their core gang, or the resize
    # interval): left out of the cycle, shown pending with their reason
    found, held = settle(state, entries, holds, lambda s: schedule(s, at, config, seed))
    found = told(found)
    worlds = elastic_worlds(entries, state, found, held)
    plan = with_holds(found, held)
    if as_json:
        typer.echo(json.dumps(plan_to_dict(plan, worlds), indent=2))
        return
    render(console, state, plan, worlds)


def told(plan: Plan) -> Plan:
    """`plan` with each pending sentence told which reservations it waits behind, in the words
    the API adds to a stored one at read time (`reasons.reason_with_reservations`): the core
    stores no holder in the sentence, as that moves while the sentence stays true."""
    held = [(r.workload_id, r.until) for r in plan.reservations]
    if not held:
        return plan
    return dataclasses.replace(plan, pending={
        wid: reason_with_reservations(r, wid, held) for wid, r in plan.pending.items()})


def plan_to_dict(plan: Plan, worlds: list[ElasticWorld] | None = None) -> dict[str, Any]:
    return {
        "now": plan.now,
        "placements": [
            {
                "workload": p.workload_id,
                "queue": p.queue,
                "backfilled": p.backfilled,
                "workers": [
                    {"node": a.node_id, "devices": list(a.devices), "gpu_milli": a.milli_per_device}
                    for a in p.assignments
                ],
            }
            for p in plan.placements
        ],
        "evictions": [
            {
                "workload": e.workload_id,
                "queue": e.queue,
                "rule": e.rule,
                "for": e.for_workload,
                "message": e.message,
            }
            for e in plan.evictions
        ],
        "pending": {
            k: {"code": r.code, "message": r.message, "unresolvable": r.unresolvable}
            for k, r in plan.pending.items()
        },
        "reservations": [
            {"workload": r.workload_id, "nodes": list(r.node_ids), "until": r.until}
            for r in plan.reservations
        ],
        "stats": plan.stats,
        "elastic": {w.name: w.as_dict() for w in worlds or ()},
    }


def render(console: Console, state: ClusterState, plan: Plan,
           worlds: list[ElasticWorld] | None = None) -> None:
    nodes = {n.id: n for n in state.nodes}
    work = {w.id: w for w in state.workloads}
    t = Table(title=f"Placements ({len(plan.placements)})", title_justify="left")
    for col in ("workload", "queue", "shape", "where", "$/h"):
        t.add_column(col, justify="right" if col == "$/h" else "left")
    for p in plan.placements:
        w = work[p.workload_id]
        where = ", ".join(f"{a.node_id}[{','.join(map(str, a.devices))}]" for a in p.assignments)
        cost = sum(
            nodes[a.node_id].price_per_gpu_hour * a.milli_per_device * len(a.devices) / 1000
            for a in p.assignments
        )
        tag = " (backfill)" if p.backfilled else " (move)" if p.workload_id in plan.moves else ""
        t.add_row(p.workload_id + tag, p.queue, _shape(w), where, f"{cost:.2f}")
    console.print(t)
    if plan.evictions:
        e = Table(title=f"Evictions ({len(plan.evictions)})", title_justify="left")
        for col in ("workload", "queue", "rule", "why"):
            e.add_column(col)
        for ev in plan.evictions:
            e.add_row(ev.workload_id, ev.queue, ev.rule, ev.message)
        console.print(e)
    if plan.pending:
        pt = Table(title=f"Pending ({len(plan.pending)})", title_justify="left")
        for col in ("workload", "queue", "reason", "why"):
            pt.add_column(col)
        for wid, r in plan.pending.items():
            code = f"[red]{r.code}[/red]" if r.unresolvable else r.code
            pt.add_row(wid, work[wid].queue if wid in work else "?", code, r.message)
        console.print(pt)
    for res in plan.reservations:
        until = "" if res.until is None else f" until t={res.until:.0f}"
        console.print(f"reserved for {res.workload_id}{until}: {', '.join(res.node_ids)}",
                      markup=False, highlight=False)
    for world in worlds or ():
        console.print(world.sentence(), highlight=False)
    total = sum(n.gpu_count for n in state.nodes if n.schedulable)
    console.print(
        f"{len(plan.placements)} placed, {len(plan.evictions)} evicted, {len(plan.pending)} pending; "
        f"{plan.stats.get('free_gpus', 0):g} of {total} GPUs free after the plan"
    )


def _shape(w: Workload) -> str:
    r = w.resources
    per = (
        f"{r.gpus} GPU"
        if r.gpus
        else f"{r.gpu_milli / 1000:g} GPU"
        if r.gpu_milli
        else f"{r.gpu_memory_mib} MiB"
    )
    models = "/".join(w.gpu_models)
    return f"{w.workers}x {per}{' ' + models if models else ''}"
