"""`corral plan` says what the live loop does with an elastic job (issue 13).

The same situation is given to the control plane (tests/control/rig.py: 2 nodes x 4 GPUs,
queue q), stepped as it applies its plans until it settles, and to `corral plan` as files; the
two must agree on which of the job's units run and on why the others wait. Both ask one test of
whether the core gang holds its place (`elastic.gang_holds_its_place`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.control.rig import Rig
from typer.testing import CliRunner

from corral.cli.main import app
from corral.control import elastic as E
from corral.store import Store

BASE = {"queue": "q", "gpus": 1, "cpu": 0.1, "memory": 64, "command": ["run"]}
POOL = {
    "providers": [{"name": "dc", "capacity_kind": "owned", "node_groups": [
        {"name": "n", "count": 2, "gpu_model": "H100", "gpus": 4, "gpu_memory": "80GiB",
         "cpu": 64, "memory": "256GiB"}]}],
    "queues": [{"name": "q", "quota_gpus": 8}],
}


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def live(rig: Rig, blocker: dict[str, Any] | None, elastic: dict[str, Any]
         ) -> tuple[set[str], dict[str, str]]:
    """The job's units placed once the loop settles, and the reason codes of the others."""
    if blocker is not None:
        rig.submit(name="blk", **blocker)
        rig.step(2)
    job = rig.submit(name="el", elastic=elastic)
    rig.step(8)
    units = E.unit_ids(job, E.WorkloadSpec.model_validate({**BASE, "name": "el",
                                                           "elastic": elastic}))
    rows = {u.removeprefix(job) or "core": rig.get(u) for u in units}
    return ({k for k, r in rows.items() if r.state in ("scheduled", "starting", "running")},
            {k: r.reason_code for k, r in rows.items() if r.state == "pending"})


def planned(tmp_path: Path, blocker: dict[str, Any] | None, elastic: dict[str, Any]
            ) -> tuple[set[str], dict[str, str]]:
    work = [{**BASE, "name": "el", "elastic": elastic}]
    if blocker is not None:
        placed = [{"node": f"dc-n-{k}", "devices": list(range(blocker["gpus"]))}
                  for k in range(blocker["workers"])]
        work.append({**BASE, "name": "blk", **blocker, "running": {"placed_on": placed}})
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(POOL))
    (tmp_path / "work.yaml").write_text(yaml.safe_dump({"workloads": work}))
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "pool.yaml"),
                                      str(tmp_path / "work.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    p = json.loads(result.output)
    name = {"el": "core", **{f"el-e{k}": f"-e{k}" for k in range(1, 9)}}
    return ({name[x["workload"]] for x in p["placements"] if x["workload"] in name},
            {name[w]: r["code"] for w, r in p["pending"].items() if w in name})


@pytest.mark.parametrize(("blocker", "elastic"), [
    (None, {"min_workers": 2, "max_workers": 4, "resize_interval": 30}),
    ({"gpus": 3, "workers": 2}, {"min_workers": 3, "max_workers": 5, "resize_interval": 10}),
    ({"gpus": 2, "workers": 2}, {"min_workers": 2, "max_workers": 6, "resize_interval": 10}),
], ids=["free-pool-starts-at-max", "gang-waits-extras-held", "gang-and-what-fits"])
def test_plan_and_live_loop_agree(rig: Rig, tmp_path: Path, blocker: dict[str, Any] | None,
                                  elastic: dict[str, Any]) -> None:
    running, waiting = live(rig, blocker, elastic)
    assert planned(tmp_path, blocker, elastic) == (running, waiting)
