"""WebSocket /v1/workloads/{id}/shell (`corral ssh`): the token and the rights of exec, a worker
that is not running, bad sizes, and a backend without a terminal (the agent backend's relay
carries none yet) each refused with a close code and a reason naming the problem."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from starlette.websockets import WebSocketDisconnect

from api.harness import build, job
from corral.store import Store
from corral.store.schema import WorkloadRow


def _closed(api: object, path: str, headers: dict[str, str]) -> WebSocketDisconnect:
    with api.client.websocket_connect(path, headers=headers) as ws, \
            pytest.raises(WebSocketDisconnect) as e:  # type: ignore[attr-defined]
        ws.receive_text()
    return e.value


def test_shell_checks_the_token_the_rights_and_the_state(store: Store) -> None:
    api = build(store)
    tid = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.admin).json()[
        "workloads"][0]["id"]
    for path, headers, code in (
            (f"/v1/workloads/{tid}/shell", {}, 4401),
            (f"/v1/workloads/{tid}/shell", api.ann, 4404),  # another queue's work
            (f"/v1/workloads/{tid}/shell?rows=0", api.ann, 4422),
            (f"/v1/workloads/{tid}/shell?worker=x", api.admin, 4422),
            (f"/v1/workloads/{tid}/shell", api.admin, 4409)):  # pending
        assert _closed(api, path, headers).code == code, path


def test_a_backend_without_a_terminal_says_so(store: Store) -> None:
    api = build(store)
    wid = api.client.post("/v1/workloads", json=job(), headers=api.ann).json()[
        "workloads"][0]["id"]
    with store.write() as c:  # as if the loop had started it on the fake backend
        c.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(state="running"))
    got = _closed(api, f"/v1/workloads/{wid}/shell", api.ann)
    assert got.code == 4501 and "local backend only" in got.reason and "corral exec" in got.reason
