"""Workflow fields end to end on the local backend: a real `corral up` (subprocess), the CLI
submitting examples/pipeline.yaml (names of the file resolved to ids), real worker processes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.testing.corral_up import CorralServer

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PY = sys.executable


def _example(name: str, tmp: Path, **commands: list[str]) -> Path:
    """An example file on the virtual pool's queue, with quick commands where given."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    for item in doc["workloads"]:
        item["queue"] = "default"
        item["command"] = commands.get(item["name"].replace("-", "_"), item["command"])
    path = tmp / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _states(srv: CorralServer, ids: dict[str, str]) -> dict[str, tuple[str, str]]:
    with srv.client() as c:
        return {n: (c.get(w).state, c.get(w).reason_code) for n, w in ids.items()}


def _wait_ended(srv: CorralServer, ids: dict[str, str]) -> dict[str, tuple[str, str]]:
    with srv.client() as c:
        for wid in ids.values():
            c.wait(wid, timeout_s=90)
    return _states(srv, ids)


def test_a_pipeline_file_runs_in_order_and_cancels_what_can_never_run(
        server: CorralServer, tmp_path: Path) -> None:
    ok = [PY, "-c", "print('ok')"]
    path = _example("pipeline.yaml", tmp_path, prepare=ok, train=[PY, "-c", "import time; "
                    "time.sleep(1)"], report=ok, alert_on_failure=ok)
    dry = server.cli("submit", "--dry-run", str(path))
    assert "restart_on: restarted after node failure, preemption, spot interruption; exit " \
           "codes 75" in dry.stdout
    assert "depends_on: prepare (earlier in this file) must succeed: held until it does" \
           in dry.stdout
    out = server.cli_json("submit", str(path))
    ids = {item["name"]: item["workloads"][0]["id"] for item in out}  # type: ignore[union-attr]
    states = _wait_ended(server, ids)
    assert states == {"prepare": ("succeeded", "Completed"), "train": ("succeeded", "Completed"),
                      "report": ("succeeded", "Completed"),
                      "alert-on-failure": ("cancelled", "DependencyNeverMet")}
    with server.client() as c:
        prepare, train = c.get(ids["prepare"]), c.get(ids["train"])
        assert train.spec["depends_on"] == [{"id": ids["prepare"]}]  # the name became its id
        assert prepare.finished_at is not None and train.started_at is not None
        assert train.started_at >= prepare.finished_at
        assert ids["train"] in c.get(ids["alert-on-failure"]).reason_message


def test_a_failed_parent_is_named_by_its_cancelled_dependents(server: CorralServer,
                                                              tmp_path: Path) -> None:
    ok = [PY, "-c", "print('ok')"]
    path = _example("pipeline.yaml", tmp_path, prepare=[PY, "-c", "raise SystemExit(3)"],
                    train=ok, report=ok, alert_on_failure=ok)
    out = json.loads(server.cli("submit", str(path), "--json").stdout)
    ids = {item["name"]: item["workloads"][0]["id"] for item in out}
    states = _wait_ended(server, ids)
    assert states["prepare"] == ("failed", "NotRetried")  # exit 3: not retried by default
    assert states["train"] == ("cancelled", "DependencyNeverMet")
    assert states["report"] == ("succeeded", "Completed")  # when: ended, of a cancelled train
    assert states["alert-on-failure"] == ("cancelled", "DependencyNeverMet")


def test_a_file_whose_items_loop_is_refused_naming_the_cycle(server: CorralServer,
                                                            tmp_path: Path) -> None:
    items = [{"name": n, "queue": "default", "cpu": 0.1, "memory": 64, "command": [PY, "-V"],
              "depends_on": [{"id": d}]} for n, d in (("a", "b"), ("b", "a"))]
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump({"workloads": items}))
    r = server.cli("submit", str(path), check=False)
    assert r.returncode == 1
    assert "workloads[0].depends_on[0].id (a): forms a cycle (a -> b -> a)" in r.stderr


def test_a_sweep_runs_as_one_group_within_its_parallel_limit(server: CorralServer,
                                                             tmp_path: Path) -> None:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "sweep.yaml").read_text())
    doc["queue"] = "default"
    doc["command"][0] = PY
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # the grid's order is the tasks'

    out = server.cli_json("submit", str(path))
    group = out[0]["group_id"]  # type: ignore[index]
    most = 0
    with server.client() as c:
        ids = [w.id for w in c.group(group).workloads]
        assert ids == [f"{group}-{i}" for i in range(6)]
        while True:
            states = [w.state for w in c.group(group).workloads]
            most = max(most, sum(s in ("scheduled", "starting", "running") for s in states))
            if all(s in ("succeeded", "failed", "cancelled") for s in states):
                break
            time.sleep(0.2)
        assert set(states) == {"succeeded"} and most <= 2
        printed = {c.logs(w).data.strip() for w in ids}
    assert "task 3 of 6: {'batch_size': 32, 'lr': 0.01}" in printed
    assert len(printed) == 6
    listed = server.cli("ls", "--group", group, "--all", "-o", "ids").stdout.split()
    assert sorted(listed) == sorted(ids)


def test_a_group_is_cancelled_as_one(server: CorralServer, tmp_path: Path) -> None:
    spec = {"name": "long", "queue": "default", "cpu": 0.1, "memory": 64,
            "command": [PY, "-c", "import time; time.sleep(60)"],
            "array": {"range": "0-3", "parallel": 1}}
    with server.client() as c:
        group = c.submit(spec).group_id
        first = f"{group}-0"
        for _ in range(300):
            if c.get(first).state == "running":
                break
            time.sleep(0.1)
        done = c.cancel_group(group)
        assert {w.state for w in done.workloads[1:]} == {"cancelled"}  # held: at once
        c.wait(first, timeout_s=30)
        assert {w.state for w in c.group(group).workloads} == {"cancelled"}


def test_the_cli_cancels_a_group(server: CorralServer) -> None:
    spec = {"name": "held", "queue": "default", "cpu": 0.1, "memory": 64,
            "command": [PY, "-c", "import time; time.sleep(60)"],
            "array": {"range": "0-2", "parallel": 1}}
    with server.client() as c:
        group = c.submit(spec).group_id
        server.cli("cancel", "--group", group)
        for w in c.group(group).workloads:
            c.wait(w.id, timeout_s=30)
        assert {w.state for w in c.group(group).workloads} == {"cancelled"}
