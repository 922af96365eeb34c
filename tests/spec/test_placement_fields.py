"""Where work may run, as the files say it: capacity kinds, node selectors, least GPU memory,
node labels, named racks, every scheduler knob, and the dry run's `placed_on`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from corral.cli.main import app
from corral.core import ClusterState, schedule
from corral.core.config import SchedulerConfig
from corral.core.model import LABEL_RACK, LABEL_REGION, CapacityKind, WorkloadState
from corral.spec import PoolSpec, SchedulerSpec, SpecError, WorkloadSpec, load_pool, load_workloads

ROOT = Path(__file__).resolve().parents[2]
OK: dict[str, Any] = {"name": "train", "queue": "research", "gpus": 1}
OWNED, OD, SPOT = CapacityKind.OWNED, CapacityKind.ON_DEMAND, CapacityKind.SPOT


def problems(model: type[WorkloadSpec] | type[PoolSpec], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return str(SpecError.from_validation(info.value))


BAD_WORKLOADS = [
    ("capacity-empty", {"capacity": []}, "capacity: ", "at least 1"),
    ("capacity-unknown", {"capacity": ["cheap"]}, "capacity[0]", "'spot'"),
    ("capacity-twice", {"capacity": ["spot", "spot"]}, "capacity: ", "at most once"),
    ("capacity-not-a-list", {"capacity": "spot"}, "capacity", "list"),
    ("selector-bad-key", {"node_selector": {"gpu type": "a"}}, "node_selector", "at most 63"),
    ("selector-bad-prefix", {"node_selector": {"Example.COM/x": "a"}}, "node_selector",
     "DNS subdomain"),
    ("selector-long-value", {"node_selector": {"tier": "v" * 64}}, "node_selector",
     "must be empty or"),
    ("selector-unknown-builtin", {"node_selector": {"corral.dev/colour": "red"}},
     "node_selector", "corral.dev/region"),
    ("selector-bad-capacity", {"node_selector": {"corral.dev/capacity": "cheap"}},
     "node_selector", "owned, on-demand, spot"),
    ("selector-too-many", {"node_selector": {f"k{i}": "v" for i in range(65)}},
     "node_selector", "at most 64"),
    ("selector-not-text", {"node_selector": {"tier": 1}}, "node_selector.tier", "string"),
    ("min-memory-fraction", {"gpus": 0.5, "min_gpu_memory": "40GiB"}, "min_gpu_memory",
     "gpu_memory"),
    ("min-memory-no-gpu", {"gpus": 0, "min_gpu_memory": "40GiB"}, "min_gpu_memory",
     "whole GPUs"),
    ("min-memory-zero", {"min_gpu_memory": 0}, "min_gpu_memory", "remove it"),
    ("min-memory-words", {"min_gpu_memory": "big"}, "min_gpu_memory", "80GiB"),
]


@pytest.mark.parametrize("extra,field,fix", [b[1:] for b in BAD_WORKLOADS],
                         ids=[b[0] for b in BAD_WORKLOADS])
def test_bad_placement_fields_name_the_field_and_fix(extra: dict[str, Any], field: str,
                                                     fix: str) -> None:
    text = problems(WorkloadSpec, {**OK, **extra})
    assert field in text and fix in text, text


def test_fields_reach_the_core_workload() -> None:
    spec = WorkloadSpec.model_validate({
        **OK, "gpus": 2, "capacity": ["spot", "on-demand"], "min_gpu_memory": "40GiB",
        "node_selector": {"fabric": "infiniband", "corral.dev/region": "eu-central"}})
    (w,) = spec.to_core("train", 0.0)
    assert w.capacity_kinds == (SPOT, OD) and w.allowed_capacity == (SPOT, OD)
    assert w.node_selector == (("corral.dev/region", "eu-central"), ("fabric", "infiniband"))
    assert w.min_gpu_memory_mib == 40 * 1024


@pytest.mark.parametrize("extra,allowed", [
    ({}, (OWNED, OD, SPOT)),  # a job is preemptible: spot is a preemption it can take
    ({"preemptible": False}, (OWNED, OD)),
    ({"preemptible": False, "capacity": ["spot"]}, (SPOT,)),
    ({"kind": "interactive", "gpus": 0.25}, (OWNED, OD)),
    ({"kind": "interactive", "gpus": 0.25, "capacity": ["owned", "spot"]}, (OWNED, SPOT)),
], ids=["job", "job-not-preemptible", "job-asks-spot", "session", "session-asks-spot"])
def test_default_capacity_keeps_work_that_must_not_stop_off_spot(
        extra: dict[str, Any], allowed: tuple[CapacityKind, ...]) -> None:
    (w,) = WorkloadSpec.model_validate({**OK, **extra}).to_core("w", 0.0)
    assert w.allowed_capacity == allowed


def _replicas(**fields: Any) -> list[tuple[CapacityKind, ...]]:
    spec = WorkloadSpec.model_validate({**OK, "kind": "service", **fields})
    return [w.allowed_capacity for w in spec.to_core("svc", 0.0)]


STABLE, ANY = (OWNED, OD), (OWNED, OD, SPOT)


@pytest.mark.parametrize("fields,want", [
    ({"replicas": 4, "min_replicas": 2}, [STABLE, STABLE, ANY, ANY]),
    ({"replicas": 2, "min_replicas": 0}, [ANY, ANY]),
    ({"replicas": 3}, [STABLE] * 3),  # no minimum given: every replica is needed
    ({"replicas": 3, "min_replicas": 1, "preemptible": True}, [STABLE, ANY, ANY]),
    ({"replicas": 2, "preemptible": True}, [ANY, ANY]),
    ({"replicas": 3, "min_replicas": 2, "capacity": ["spot"]}, [(SPOT,)] * 3),
], ids=["min-2-of-4", "min-0", "no-min", "preemptible-min-1", "preemptible", "spot-asked"])
def test_service_minimum_stays_off_spot_unless_asked(fields: dict[str, Any],
                                                     want: list[tuple[CapacityKind, ...]]) -> None:
    assert _replicas(**fields) == want


def test_stored_spec_reads_back_equal() -> None:
    from corral.control.submission import stored_form

    spec = WorkloadSpec.model_validate({**OK, "capacity": ["owned"], "min_gpu_memory": "40GiB",
                                        "node_selector": {"example.com/tier": "gold"}})
    body = json.loads(json.dumps(stored_form(spec)))
    assert body["min_gpu_memory"] == 40960 and body["capacity"] == ["owned"]
    assert WorkloadSpec.from_stored(body) == spec


# --- the pool file ----------------------------------------------------------------------------

def pool(group: dict[str, Any], **provider: Any) -> dict[str, Any]:
    g = {"name": "g", "count": 4, "gpu_model": "H100", "gpus": 8, "gpu_memory": "80GiB", **group}
    return {"providers": [{"name": "p", **provider, "node_groups": [g]}]}


def test_node_group_labels_and_named_racks_reach_the_nodes() -> None:
    spec = PoolSpec.model_validate(pool({"labels": {"fabric": "ib", "example.com/row": "7"},
                                         "racks": ["r12", "r13", "r14"]}))
    nodes = spec.nodes()
    assert [n.rack for n in nodes] == ["r12", "r13", "r14", "r12"]
    assert all(n.labels == (("example.com/row", "7"), ("fabric", "ib")) for n in nodes)
    assert nodes[1].label("fabric") == "ib" and nodes[1].label(LABEL_RACK) == "r13"
    counted = PoolSpec.model_validate(pool({"racks": 2})).nodes()
    assert [n.rack for n in counted] == ["g-rack0", "g-rack1", "g-rack0", "g-rack1"]


BAD_POOLS = [
    ("label-reserved", {"labels": {"corral.dev/region": "x"}}, "set those fields instead"),
    ("label-bad-key", {"labels": {"-x": "y"}}, "at most 63"),
    ("label-bad-value", {"labels": {"x": "a b"}}, "must be empty or"),
    ("label-too-many", {"labels": {f"k{i}": "v" for i in range(65)}}, "at most 64"),
    ("racks-empty", {"racks": []}, "name at least one"),
    ("racks-twice", {"racks": ["a", "a"]}, "each name once"),
    ("racks-bad-name", {"racks": ["rack 1"]}, "rack name"),
    ("racks-zero", {"racks": 0}, "count from 1"),
    ("racks-bool", {"racks": True}, "racks"),
]


@pytest.mark.parametrize("group,fix", [b[1:] for b in BAD_POOLS], ids=[b[0] for b in BAD_POOLS])
def test_bad_node_group_fields_name_the_fix(group: dict[str, Any], fix: str) -> None:
    text = problems(PoolSpec, pool(group))
    assert "node_groups[0]" in text and fix in text, text


HOST: dict[str, Any] = {"cpu": 64, "memory": "512GiB"}


def test_region_selector_spans_providers_with_one_region_name() -> None:
    """`corral.dev/region` is the region's name, whatever provider: a job that must stay in
    eu-central may use the owned site and the cloud there, and nothing elsewhere."""
    spec = PoolSpec.model_validate({
        "providers": [
            {"name": "site", "capacity_kind": "owned", "region": "eu-central",
             "node_groups": [{"name": "a", "gpu_model": "A100", "gpus": 4, "gpu_memory": 80,
                              **HOST}]},
            {"name": "cloud", "region": "eu-central",
             "node_groups": [{"name": "b", "gpu_model": "H100", "gpus": 4, "gpu_memory": 80,
                              **HOST}]},
            {"name": "far", "region": "us-east-1",
             "node_groups": [{"name": "c", "count": 4, "gpu_model": "H100", "gpus": 4,
                              "gpu_memory": 80, **HOST}]},
        ],
        "queues": [{"name": "research", "quota_gpus": 24}]})
    jobs = [w for i in range(4) for w in WorkloadSpec.model_validate(
        {**OK, "name": f"j{i}", "gpus": 2, "node_selector": {LABEL_REGION: "eu-central"}}
    ).to_core(f"j{i}", 0.0)]
    state = ClusterState(tuple(spec.nodes()), tuple(spec.queues_core()), tuple(jobs))
    plan = schedule(state, 0.0)
    used = {a.node_id for p in plan.placements for a in p.assignments}
    assert used == {"site-a-0", "cloud-b-0"} and len(plan.placements) == 4


def _spec_name(config_field: str) -> str:
    return config_field.removesuffix("_s")


def test_every_scheduler_knob_is_in_the_pool_file() -> None:
    """Each `SchedulerConfig` field has its `scheduler:` key (durations without `_s`), and a
    value given there arrives in the core's config."""
    spec_fields = set(SchedulerSpec.model_fields)
    missing = [f.name for f in dataclasses.fields(SchedulerConfig)
               if _spec_name(f.name) not in spec_fields]
    assert not missing, f"SchedulerConfig knobs the pool file cannot set: {missing}"
    given: dict[str, Any] = {
        "scoring": {"binpack": 1.0}, "queue_scoring": {"prod": {"spread": 1.0}},
        "plugin_params": {"fgd": {"levels": 100}}, "backfill": False, "consolidate": False,
        "reclaim": False, "preempt": False, "share_units": {"K80": 0.3}}
    for f in dataclasses.fields(SchedulerConfig):
        default = getattr(SchedulerConfig(), f.name)
        if isinstance(default, int | float) and not isinstance(default, bool):
            given.setdefault(_spec_name(f.name), default * 2 + 1)
    config = SchedulerSpec.model_validate(given).to_core()
    for f in dataclasses.fields(SchedulerConfig):
        assert getattr(config, f.name) != getattr(SchedulerConfig(), f.name), f.name


@pytest.mark.parametrize("params,fix", [
    ({"binpak": {}}, "not a score plugin"),
    ({"fgd": {"levls": 3}}, "its parameters are"),
    ({"fgd": {"levels": "many"}}, "its parameters are"),
    ({"fgd": {"seed": 1}}, "set by corral"),
], ids=["unknown-plugin", "unknown-param", "bad-value", "seed"])
def test_bad_plugin_params_are_refused_with_the_fix(params: dict[str, Any], fix: str) -> None:
    text = problems(PoolSpec, {"scheduler": {"plugin_params": params}})
    assert "scheduler.plugin_params" in text and fix in text, text


# --- the dry run's files ----------------------------------------------------------------------

runner = CliRunner()


def _plan(tmp_path: Path, running: str) -> Any:
    f = tmp_path / "w.yaml"
    f.write_text("workloads:\n  - name: old\n    queue: prod\n    gpus: 8\n    gpu_models: [A100]\n"
                 f"    command: [x]\n    running:\n      started_ago: 1h\n{running}")
    return runner.invoke(app, ["plan", str(ROOT / "examples/pool.yaml"), str(f), "--now", "1e6",
                               "--json"])


def test_placed_on_puts_a_running_workload_on_its_node(tmp_path: Path) -> None:
    result = _plan(tmp_path, "      placed_on: [{node: onprem-fra-dgx-a100-1, devices: "
                             "[0, 1, 2, 3, 4, 5, 6, 7]}]\n")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    total = sum(n.gpu_count for n in load_pool(ROOT / "examples/pool.yaml").nodes())
    assert plan["stats"]["free_gpus"] == total - 8 and "old" not in plan["pending"]
    assert not plan["placements"]  # it runs already: nothing to place


def test_yaml_on_key_is_refused_with_the_new_name(tmp_path: Path) -> None:
    """YAML 1.1 reads `on:` as the boolean true: the error says so and names placed_on."""
    result = _plan(tmp_path, "      on: [{node: onprem-fra-dgx-a100-1, devices: [0]}]\n")
    assert result.exit_code == 2
    assert "workloads[0].running" in result.output and "placed_on" in result.output
    assert "Traceback" not in result.output


def test_examples_keep_prod_service_and_notebooks_off_spot() -> None:
    nodes = {n.id: n for n in load_pool(ROOT / "examples/pool.yaml").nodes()}
    result = runner.invoke(app, ["plan", str(ROOT / "examples/pool.yaml"),
                                 str(ROOT / "examples/workloads.yaml"), "--now", "1e6", "--json"])
    assert result.exit_code == 0, result.output
    where = {p["workload"]: [nodes[w["node"]] for w in p["workers"]]
             for p in json.loads(result.output)["placements"]}
    for wid in ("embed-service/r0", "embed-service/r1", "notebook-alice", "notebook-bob"):
        assert wid in where and all(n.capacity_kind != SPOT for n in where[wid]), wid
    assert all(n.label("fabric") == "infiniband" for n in where["ranker-train"])
    assert all(n.gpu_memory_mib >= 40 * 1024 for n in where["eval-70b"])
    entries = {e.name: e for e in load_workloads(ROOT / "examples/workloads.yaml")}
    assert entries["ranker-train"].node_selector and entries["eval-70b"].min_gpu_memory


def test_why_pending_counts_only_nodes_the_selector_allows() -> None:
    spec = PoolSpec.model_validate({
        "providers": [{"name": "p", "node_groups": [
            {"name": "g", "gpu_model": "H100", "gpus": 4, "gpu_memory": 80,
             "labels": {"fabric": "ib"}, **HOST},
            {"name": "h", "gpu_model": "H100", "gpus": 4, "gpu_memory": 80, **HOST}]}],
        "queues": [{"name": "research", "quota_gpus": 8}]})
    nodes, queues = tuple(spec.nodes()), tuple(spec.queues_core())
    fill, gang, picky = (w for name, extra in [
        ("fill", {"preemptible": False, "node_selector": {"fabric": "ib"}}),
        ("gang", {"workers": 2}), ("picky", {"node_selector": {"fabric": "ib"}})]
        for w in WorkloadSpec.model_validate({**OK, "gpus": 4, "name": name, **extra}
                                             ).to_core(name, 0.0))
    (placed,) = schedule(ClusterState(nodes, queues, (fill,)), 0.0).placements
    running = dataclasses.replace(fill, state=WorkloadState.RUNNING, started_at=0.0,
                                  assignments=placed.assignments)
    alone = schedule(ClusterState(nodes, queues, (running, picky)), 10.0)
    assert "no free capacity it may use holds one worker" in alone.pending["picky"].message
    plan = schedule(ClusterState(nodes, queues, (running, gang, picky)), 10.0)
    assert plan.pending["picky"].message == alone.pending["picky"].message
