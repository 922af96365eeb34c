"""Arrays and sweeps on the control loop (fake backend, manual clock): one submission of N
tasks, each with its index and parameters in its environment, at most `parallel` at once
(the rest held with a reason), cancelled and reported as one group."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.control import cancel
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def _submit(rig: Rig, **fields: Any) -> list[WorkloadRecord]:
    spec = WorkloadSpec.model_validate({"name": "sweep", "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["train"], **fields})
    return rig.submissions.submit(spec, "ann", rig.clock.now())


def _group(rig: Rig, group_id: str) -> list[WorkloadRecord]:
    with rig.store.read() as c:
        return sorted(W.list_workloads(c, group_id=group_id, limit=1000), key=lambda r: r.seq)


def _running(rig: Rig, group_id: str) -> list[str]:
    return [r.id for r in _group(rig, group_id) if r.state == "running"]


def test_a_range_runs_at_most_parallel_tasks_and_releases_the_next_as_one_ends(rig: Rig) -> None:
    tasks = _submit(rig, array={"range": "10-14", "parallel": 2})
    group = tasks[0].group_id
    assert [t.id for t in tasks] == [f"{group}-{i}" for i in range(10, 15)]
    assert [t.reason_code for t in tasks] == ["Submitted"] * 2 + ["ArrayParallelLimit"] * 3
    assert "at most 2 of its tasks run at once" in tasks[4].reason_message
    rig.step(3)
    assert _running(rig, group) == [f"{group}-10", f"{group}-11"]  # 8 GPUs free, 2 used
    rig.backend.finish(f"{group}-10")
    rig.step(3)
    assert _running(rig, group) == [f"{group}-11", f"{group}-12"]
    for i in range(11, 15):
        rig.backend.finish(f"{group}-{i}")
        rig.step(3)
    assert {r.state for r in _group(rig, group)} == {"succeeded"}
    env = {launch.workload_id: launch.env for launch in rig.backend.launches}
    assert env[f"{group}-13"]["CORRAL_ARRAY_INDEX"] == "13"
    assert env[f"{group}-13"]["CORRAL_ARRAY_SIZE"] == "5"
    assert json.loads(env[f"{group}-13"]["CORRAL_PARAMS"]) == {}


def test_a_grid_gives_each_task_its_parameters(rig: Rig) -> None:
    tasks = _submit(rig, array={"grid": {"lr": [0.1, 0.01], "bs": [32, 64, 128]}},
                    env={"DATA": "/d"})
    assert len(tasks) == 6
    rig.step(3)
    env = {launch.workload_id: launch.env for launch in rig.backend.launches}
    got = {json.dumps(json.loads(e["CORRAL_PARAMS"]), sort_keys=True) for e in env.values()}
    assert len(got) == 6  # every combination once
    last = env[f"{tasks[0].group_id}-5"]
    assert (last["CORRAL_PARAM_LR"], last["CORRAL_PARAM_BS"], last["DATA"]) == ("0.01", "128",
                                                                             "/d")
    assert json.loads(last["CORRAL_PARAMS"]) == {"lr": 0.01, "bs": 128}


def test_a_failed_task_does_not_stop_the_others_and_frees_its_slot(rig: Rig) -> None:
    tasks = _submit(rig, array={"range": "0-3", "parallel": 1})
    group = tasks[0].group_id
    rig.step(3)
    rig.backend.fail(f"{group}-0", exit_code=2)  # not retried (restart_on default)
    rig.step(3)
    assert [r.state for r in _group(rig, group)][:2] == ["failed", "running"]


def test_cancelling_the_tasks_of_a_group_ends_held_and_running_alike(rig: Rig) -> None:
    tasks = _submit(rig, array={"range": "0-3", "parallel": 2})
    group = tasks[0].group_id
    rig.step(3)
    for t in tasks:
        cancel(rig.store, t.id, rig.clock.now(), "ann")
    rig.step(3)
    assert {r.state for r in _group(rig, group)} == {"cancelled"}
    assert len(rig.backend.launches) == 2  # the held ones never launched


def test_an_array_waits_for_its_dependency_then_fills_to_parallel(rig: Rig) -> None:
    prep = rig.submit(name="prep")
    tasks = _submit(rig, array={"range": "0-4", "parallel": 2}, depends_on=[{"id": prep}])
    group = tasks[0].group_id
    assert {t.reason_code for t in tasks} == {"WaitingForDependency"}
    rig.step(3)
    assert _running(rig, group) == []
    rig.backend.finish(prep)
    rig.step(3)
    assert _running(rig, group) == [f"{group}-0", f"{group}-1"]
    assert [r.reason_code for r in _group(rig, group)][2:] == ["ArrayParallelLimit"] * 3


def test_a_dependent_of_an_array_waits_for_every_task(rig: Rig) -> None:
    tasks = _submit(rig, array={"range": "0-1"})
    group = tasks[0].group_id
    report = rig.submit(name="report", depends_on=[{"id": group}])
    rig.step(3)
    rig.backend.finish(f"{group}-0")
    rig.step(3)
    assert rig.get(report).reason_code == "WaitingForDependency"
    rig.backend.finish(f"{group}-1")
    rig.step(3)
    assert rig.state(report) == "running"


def test_the_dry_run_plans_the_tasks_released_at_once_and_explains_the_array(rig: Rig) -> None:
    spec = WorkloadSpec.model_validate({"name": "sweep", "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["train"], "array": {
                                            "grid": {"lr": [0.1, 0.2], "wd": [0, 1]},
                                            "parallel": 3}})
    result = rig.submissions.dry_run(spec, rig.clock.now())
    assert result.outcome == "start" and len(result.placements) == 3
    assert any(n.startswith("array: 4 tasks (CORRAL_ARRAY_INDEX 0..3), at most 3 at once")
               and "CORRAL_PARAM_LR, CORRAL_PARAM_WD" in n for n in result.notes)


def test_a_new_leader_fills_an_array_whose_tasks_ended_while_none_led(rig: Rig) -> None:
    tasks = _submit(rig, array={"range": "0-3", "parallel": 2})
    group = tasks[0].group_id
    rig.step(3)
    for t in tasks[:2]:
        rig.backend.finish(t.id)
    rig.loop.workflow.step = lambda *a: 0  # type: ignore[method-assign]  # dies before it
    rig.step()  # the ends are recorded; nothing released
    assert [r.state for r in _group(rig, group)] == ["succeeded"] * 2 + ["pending"] * 2
    rig.loop.leadership.resign()
    revived = rig.new_loop(rig.backend, holder="next")
    for _ in range(5):
        revived.step()
        rig.clock.advance(20)  # past the old lease
    assert [r.state for r in _group(rig, group)] == ["succeeded"] * 2 + ["running"] * 2
