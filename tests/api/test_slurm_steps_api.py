"""exec, ssh and port-forward when the backend is Slurm, without a Slurm: what the API answers
before any srun runs (`corral.backends.slurm_exec.locate`'s refusals as 409 / 501 and their
close codes), and that a refusal is not audited as a session. The steps themselves, on a real
Slurm: tests/integration/test_interactive_slurm.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.websockets import WebSocketDisconnect

from api.harness import Api, build, job
from corral.backends.base import LaunchSpec
from corral.backends.errors import BackendUnavailable
from corral.backends.local_runner import CHILD_RECORD, write_identity
from corral.backends.records import AttemptRecords
from corral.core.model import WorkerAssignment
from corral.store import Store
from corral.store import audit as AU
from corral.store.schema import WorkloadRow


class _Slurm:
    """A SlurmBackend as the API's Slurm paths read it (its records); no Slurm command runs."""

    name = "slurm"

    def __init__(self, root: Path) -> None:
        self.records = AttemptRecords(root)
        self.python, self.bin_dir = sys.executable, None
        self.client_env: dict[str, str] = {}

    def _slurm(self, *args: str, check: bool = True) -> None:  # a controller that is down
        raise BackendUnavailable(f"{args[0]} did not answer in 10s: is slurmctld up?")


def _running(store: Store, tmp_path: Path, engine: dict[str, object] | None,
             job_id: str = "7", started: bool = False) -> tuple[Api, str]:
    api = build(store, backend_name="slurm")
    slurm = _Slurm(tmp_path / "work")
    api.client.app.state.corral.logs = slurm  # type: ignore[attr-defined]
    wid = str(api.client.post("/v1/workloads", json=job(), headers=api.ann).json()[
        "workloads"][0]["id"])
    with store.write() as c:  # as if the loop had started it on Slurm
        c.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(state="running"))
    if engine is not None:
        image = engine.get("image")  # shared by the store's params: never popped
        spec = LaunchSpec(workload_id=wid, attempt=0, command=("true",), queue="team-a",
                          user="ann", image=None if image is None else str(image), assignments=(
                              WorkerAssignment(0, "gpu1", (0,), 1000, 81920),))
        record = slurm.records.create(spec, {"jobs": {"0": job_id}, "notes": {}})
        if started:  # the runner's record of the worker's process
            (record.dir / "worker-0").mkdir()
            write_identity(record.dir / "worker-0" / CHILD_RECORD, os.getpid())
    return api, wid


def _closed(api: Api, path: str, headers: dict[str, str]) -> WebSocketDisconnect:
    with api.client.websocket_connect(path, headers=headers) as ws, \
            pytest.raises(WebSocketDisconnect) as e:
        ws.receive_text()
    return e.value


def _audited(store: Store, wid: str) -> list[str]:
    with store.read() as c:
        return [r.action for r in AU.list_audit(c) if r.target == wid]


@pytest.mark.parametrize(("engine", "status", "says"), [
    (None, 409, "never launched here"),  # running in the store, no record (yet) here
    ({}, 409, "has not started on Slurm yet"),  # no runner's process record
    ({"image": "docker.io/library/python:3.11"}, 501, "pyxis container"),
], ids=["no-record", "not-started", "image"])
def test_what_no_step_can_reach_is_refused_before_srun(
        store: Store, tmp_path: Path, engine: dict[str, object] | None, status: int,
        says: str) -> None:
    api, wid = _running(store, tmp_path, engine)
    got = api.client.post(f"/v1/workloads/{wid}/exec", json={"argv": ["true"]},
                          headers=api.ann)
    assert got.status_code == status and says in got.json()["message"], got.text
    for path in (f"/v1/workloads/{wid}/shell", f"/v1/workloads/{wid}/port-forward?port=80"):
        closed = _closed(api, path, api.ann)
        assert closed.code == 4000 + status and says in closed.reason, (path, closed.reason)
    assert not {"workload.exec", "workload.ssh", "workload.port_forward"} & set(
        _audited(store, wid))


def test_a_controller_that_does_not_answer_is_a_503_not_a_500(store: Store,
                                                                tmp_path: Path) -> None:
    """An array task's (or a pilot's) job id is asked of squeue: with slurmctld down or slow
    the API answers 503 naming the controller (and closes 4503), not an internal error
    (review R on ebef4bd)."""
    api, wid = _running(store, tmp_path, {}, job_id="7_1", started=True)
    got = api.client.post(f"/v1/workloads/{wid}/exec", json={"argv": ["true"]},
                          headers=api.ann)
    assert got.status_code == 503 and "Slurm's controller did not answer" in got.json()[
        "message"], got.text
    for path in (f"/v1/workloads/{wid}/shell", f"/v1/workloads/{wid}/port-forward?port=80"):
        closed = _closed(api, path, api.ann)
        assert closed.code == 4503 and "slurmctld" in closed.reason, (path, closed.reason)
