"""`corral plan` with elastic jobs: planned as the control plane stores them (a core gang of
min_workers and one-worker extras below every job), never as one gang of min or max workers.

The pool: two nodes of 4 GPUs; queues a (quota 4) and b (quota 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from corral.cli.main import app

NOW = 1_000_000.0
POOL = {
    "providers": [{"name": "dc", "capacity_kind": "owned", "node_groups": [
        {"name": "n", "count": 2, "gpu_model": "H100", "gpus": 4, "gpu_memory": "80GiB",
         "cpu": 64, "memory": "512GiB"}]}],
    "queues": [{"name": "a", "quota_gpus": 4}, {"name": "b", "quota_gpus": 4}],
}
ELASTIC = {"name": "el", "queue": "a", "gpus": 1, "command": ["train"],
           "elastic": {"min_workers": 2, "max_workers": 5, "resize_interval": 600}}


def plan(tmp_path: Path, workloads: list[dict[str, Any]], pool: dict[str, Any] = POOL
         ) -> tuple[int, str]:
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(pool))
    (tmp_path / "work.yaml").write_text(yaml.safe_dump({"workloads": workloads}))
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "pool.yaml"),
                                      str(tmp_path / "work.yaml"), "--now", str(NOW), "--json"])
    return result.exit_code, result.output


def planned(tmp_path: Path, workloads: list[dict[str, Any]], pool: dict[str, Any] = POOL
            ) -> dict[str, Any]:
    code, out = plan(tmp_path, workloads, pool)
    assert code == 0, out
    return dict(json.loads(out))


def workers(p: dict[str, Any]) -> dict[str, int]:
    return {x["workload"]: len(x["workers"]) for x in p["placements"]}


def running_on(n: int, node: str = "dc-n-0") -> list[dict[str, Any]]:
    return [{"node": node, "devices": [d]} for d in range(n)]


def test_a_free_pool_places_the_core_gang_and_every_extra(tmp_path: Path) -> None:
    p = planned(tmp_path, [ELASTIC])
    assert workers(p) == {"el": 2, "el-e1": 1, "el-e2": 1, "el-e3": 1}
    assert p["elastic"]["el"]["world_after"] == 5


def test_the_short_form_is_planned_as_the_same_job(tmp_path: Path) -> None:
    """`workers: {min: 2, max: 5}` (issue 13's spelling) is read as ELASTIC is written: the
    same placements and world, and a bad range is refused naming workers."""
    short = {k: v for k, v in ELASTIC.items() if k != "elastic"} | {
        "workers": {"min": 2, "max": 5, "resize_interval": 600}}
    assert planned(tmp_path, [short]) == planned(tmp_path, [ELASTIC])
    code, out = plan(tmp_path, [{**short, "workers": {"min": 5, "max": 2}}])
    assert code == 2 and "workloads[0].workers: max (2) must be at least min (5)" in " ".join(
        out.split()), out


def test_the_extras_take_what_is_left_and_the_rest_wait(tmp_path: Path) -> None:
    """b runs 4 GPUs (its quota), 2 on each node: the core gang and two extras fit, the third
    waits with the core's reason. As one gang of 5 it would not start; as 2, at 2."""
    p = planned(tmp_path, [ELASTIC, {"name": "fill", "queue": "b", "gpus": 2, "workers": 2,
                                     "command": ["x"], "running": {"placed_on": [
                                         {"node": "dc-n-0", "devices": [0, 1]},
                                         {"node": "dc-n-1", "devices": [0, 1]}]}}])
    assert workers(p) == {"el": 2, "el-e1": 1, "el-e2": 1}
    assert p["elastic"]["el"]["world_after"] == 4
    assert list(p["pending"]) == ["el-e3"] and p["elastic"]["el"]["extras_waiting"] == {
        "el-e3": p["pending"]["el-e3"]["code"]}
    assert not p["evictions"]  # extras never preempt


def test_an_owed_queue_takes_an_extra_and_never_the_core_gang(tmp_path: Path) -> None:
    """a's quota is 2 here: el runs a world of 5 with 3 GPUs borrowed, all on n-0 but its third
    extra on n-1; b's 4-GPU job is owed its quota: the plan evicts that extra, the world goes
    on at 4 (every worker restarts with the new size)."""
    pool = {**POOL, "queues": [{"name": "a", "quota_gpus": 2}, {"name": "b", "quota_gpus": 4}]}
    p = planned(tmp_path, [
        {**ELASTIC, "running": {"started_ago": 3600, "placed_on": running_on(4) + running_on(
            1, "dc-n-1")}},
        {"name": "own", "queue": "b", "gpus": 4, "command": ["x"]}], pool)
    world = p["elastic"]["el"]
    assert (world["world_before"], world["world_after"]) == (5, 4)
    assert [(e["workload"], e["rule"]) for e in p["evictions"]] == [("el-e3", "Reclaim")]
    assert workers(p) == {"own": 1}


def test_extras_of_a_running_job_wait_for_the_resize_interval(tmp_path: Path) -> None:
    """The world changed 2 minutes ago (interval 10): its extras are held, as the control plane
    holds them; past the interval they are placed and the world grows."""
    early = planned(tmp_path, [{**ELASTIC, "running": {"started_ago": 120,
                                                      "placed_on": running_on(2)}}])
    assert workers(early) == {}
    assert early["elastic"]["el"]["extras_held_until"] == NOW - 120 + 600
    late = planned(tmp_path, [{**ELASTIC, "running": {"started_ago": 601,
                                                     "placed_on": running_on(3)}}])
    assert workers(late) == {"el-e2": 1, "el-e3": 1}
    assert late["elastic"]["el"]["world_after"] == 5


@pytest.mark.parametrize("placed", [1, 6], ids=["below-min", "above-max"])
def test_a_running_world_outside_its_bounds_is_refused_naming_elastic(
        tmp_path: Path, placed: int) -> None:
    code, out = plan(tmp_path, [{**ELASTIC, "running": {"placed_on": running_on(
        min(placed, 4)) + running_on(max(0, placed - 4), "dc-n-1")}}])
    assert code == 2
    text = " ".join(out.split())
    assert "workloads[0].running.placed_on" in text and "elastic.min_workers" in text, text


def test_an_extras_name_taken_by_another_workload_is_refused(tmp_path: Path) -> None:
    code, out = plan(tmp_path, [ELASTIC, {"name": "el-e2", "queue": "b", "command": ["x"]}])
    assert code == 2 and "'el-e2' is used twice" in " ".join(out.split())


def test_the_table_ends_with_the_world(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(POOL))
    (tmp_path / "work.yaml").write_text(yaml.safe_dump({"workloads": [ELASTIC]}))
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "pool.yaml"),
                                      str(tmp_path / "work.yaml"), "--now", str(NOW)])
    assert result.exit_code == 0, result.output
    assert "elastic el: world of 5 workers after this cycle (2 to 5 allowed)" in " ".join(
        result.output.split())


def test_one_worker_owners_take_extras_not_a_core_gang_split_over_nodes(tmp_path: Path) -> None:
    """a's quota is 2: el's core gang has a worker on each node, its 3 extras are on n-1, b
    runs 3 GPUs on n-0 and asks for 2 more of 1 GPU each: two extras should go, world 3."""
    pool = {**POOL, "queues": [{"name": "a", "quota_gpus": 2}, {"name": "b", "quota_gpus": 6}]}
    core = [{"node": "dc-n-0", "devices": [0]}, {"node": "dc-n-1", "devices": [0]}]
    extras = [{"node": "dc-n-1", "devices": [d]} for d in (1, 2, 3)]
    owners = [{"name": f"own{d}", "queue": "b", "gpus": 1, "command": ["x"], "running": {
        "started_ago": 60, "placed_on": [{"node": "dc-n-0", "devices": [d]}]}} for d in (1, 2, 3)]
    p = planned(tmp_path, [
        {**ELASTIC, "running": {"started_ago": 3600, "placed_on": core + extras}}, *owners,
        *({"name": f"new{k}", "queue": "b", "gpus": 1, "command": ["x"]} for k in (1, 2))],
        pool)
    assert p["elastic"]["el"]["world_after"] == 3
    assert "el" not in p["elastic"]["el"]["evicted"]


def test_extras_wait_with_a_core_gang_that_does_not_fit(tmp_path: Path) -> None:
    """One GPU free on each node: the core gang of 3 waits, two extras would fit. The control
    plane stores them held for the gang (ElasticWaitsForGang) and never places them alone; the
    plan says the same: no extra placed, each pending with that reason, the gang's own reason
    in the world."""
    fill = {"name": "fill", "queue": "b", "gpus": 3, "workers": 2, "command": ["x"],
            "running": {"placed_on": [{"node": "dc-n-0", "devices": [0, 1, 2]},
                                      {"node": "dc-n-1", "devices": [0, 1, 2]}]}}
    p = planned(tmp_path, [{**ELASTIC, "elastic": {**ELASTIC["elastic"], "min_workers": 3}},
                           fill])
    world = p["elastic"]["el"]
    assert (workers(p), world["world_after"]) == ({}, 0)
    assert world["extras_held_for_core_gang"] == ["el-e1", "el-e2"]
    assert {x: p["pending"][x]["code"] for x in ("el-e1", "el-e2")} == {
        "el-e1": "ElasticWaitsForGang", "el-e2": "ElasticWaitsForGang"}
    assert world["core_gang_waits"]["code"] == p["pending"]["el"]["code"] != "ElasticWaitsForGang"


def test_the_table_says_the_gang_waits_and_its_extras_with_it(tmp_path: Path) -> None:
    fill = {"name": "fill", "queue": "b", "gpus": 3, "workers": 2, "command": ["x"],
            "running": {"placed_on": [{"node": "dc-n-0", "devices": [0, 1, 2]},
                                      {"node": "dc-n-1", "devices": [0, 1, 2]}]}}
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(POOL))
    (tmp_path / "work.yaml").write_text(yaml.safe_dump({"workloads": [
        {**ELASTIC, "elastic": {**ELASTIC["elastic"], "min_workers": 3}}, fill]}))
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "pool.yaml"),
                                      str(tmp_path / "work.yaml"), "--now", str(NOW)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Placements (0)" in text
    assert "el-e1 │ a │ ElasticWaitsForGang │ waits for its elastic job's core" in text, text
    assert "its core gang of 3 waits: ReclaimBlocked (3 to 5 allowed)" in text, text
    assert "extras el-e1, el-e2 wait for it (ElasticWaitsForGang)" in text, text


@pytest.mark.parametrize("seed", range(24))
def test_no_extra_is_planned_without_its_core_gang(tmp_path: Path, seed: int) -> None:
    """Random pools and mixes (seeded): in the plan `corral plan` shows, an elastic job's
    extra is placed only beside its core gang (placed by the plan, or running and kept), and
    every extra left out is pending with a reason."""
    import random

    from corral.cli.elastic_plan import settle
    from corral.cli.plan import read_files
    from corral.core import schedule

    rnd = random.Random(seed)
    nodes = rnd.randint(1, 3)
    pool = {**POOL, "providers": [{**POOL["providers"][0], "node_groups": [
        {**POOL["providers"][0]["node_groups"][0], "count": nodes}]}]}
    work: list[dict[str, Any]] = []
    for k in range(nodes):
        busy = rnd.randint(0, 4)
        if busy:
            work.append({"name": f"fill{k}", "queue": "b", "gpus": busy, "command": ["x"],
                         "running": {"placed_on": [{"node": f"dc-n-{k}",
                                                    "devices": list(range(busy))}]}})
    for j in range(rnd.randint(1, 3)):
        low = rnd.randint(1, 4)
        work.append({"name": f"el{j}", "queue": rnd.choice("ab"), "gpus": 1, "command": ["x"],
                     "elastic": {"min_workers": low, "max_workers": low + rnd.randint(1, 4)}})
    for j in range(rnd.randint(0, 3)):
        work.append({"name": f"job{j}", "queue": rnd.choice("ab"), "gpus": rnd.randint(1, 4),
                     "command": ["x"]})
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(pool))
    (tmp_path / "work.yaml").write_text(yaml.safe_dump({"workloads": work}))
    state, spec, entries, holds = read_files(tmp_path / "pool.yaml", tmp_path / "work.yaml", NOW)
    plan, held = settle(state, entries, holds,
                        lambda s: schedule(s, NOW, spec.scheduler.to_core(), 0))
    placed = {p.workload_id for p in plan.placements}
    for e in entries:
        if e.elastic is None:
            continue
        extras = [f"{e.name}-e{k}" for k in range(1, e.elastic.extras + 1)]
        if e.name not in placed:
            assert not placed & set(extras), (seed, e.name, sorted(placed))
        assert all(x in placed or x in held or x in plan.pending for x in extras), seed
