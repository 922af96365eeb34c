"""POST /v1/workloads/{id}/exec: the rights of logs (another queue's work is 404), a worker
that is not running is 409, a backend without exec says so (501), and a bad body is 422."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from api.harness import build, job
from corral.store import Store
from corral.store.schema import WorkloadRow


def test_exec_is_checked_before_anything_runs(store: Store) -> None:
    api = build(store)
    mine = api.client.post("/v1/workloads", json=job(), headers=api.ann).json()
    theirs = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.admin)
    body = {"argv": ["true"]}
    hidden = api.client.post(f"/v1/workloads/{theirs.json()['workloads'][0]['id']}/exec",
                             json=body, headers=api.ann)
    assert hidden.status_code == 404
    wid = mine["workloads"][0]["id"]
    pending = api.client.post(f"/v1/workloads/{wid}/exec", json=body, headers=api.ann)
    assert pending.status_code == 409 and "pending" in pending.text
    assert api.client.post(f"/v1/workloads/{wid}/exec", json={"argv": []},
                           headers=api.ann).status_code == 422
    for bad in ({"worker": True}, {"timeout_s": False}, {"timeout_s": "5"}):  # not numbers
        r = api.client.post(f"/v1/workloads/{wid}/exec", json={**body, **bad}, headers=api.ann)
        assert r.status_code == 422 and next(iter(bad)) in r.text, r.text
    assert api.client.post(f"/v1/workloads/{wid}/exec", json=body).status_code == 401


def test_a_backend_without_exec_says_so(store: Store) -> None:
    api = build(store)
    wid = api.client.post("/v1/workloads", json=job(), headers=api.ann).json()[
        "workloads"][0]["id"]
    with store.write() as c:  # as if the loop had started it on the fake backend
        c.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(state="running"))
    got = api.client.post(f"/v1/workloads/{wid}/exec", json={"argv": ["true"]},
                          headers=api.ann)
    assert got.status_code == 501 and "local, agent and Slurm backends only" in got.text


def test_port_forward_checks_the_token_and_the_rights(store: Store) -> None:
    from starlette.websockets import WebSocketDisconnect

    api = build(store)
    theirs = api.client.post("/v1/workloads", json=job(queue="team-b"), headers=api.admin)
    tid = theirs.json()["workloads"][0]["id"]
    for path, headers, code in (
            (f"/v1/workloads/{tid}/port-forward?port=8888", {}, 4401),
            (f"/v1/workloads/{tid}/port-forward?port=8888", api.ann, 4404),
            (f"/v1/workloads/{tid}/port-forward?port=0", api.ann, 4422),
            (f"/v1/workloads/{tid}/port-forward?port=8888", api.admin, 4409)):  # pending
        with api.client.websocket_connect(path, headers=headers) as ws, \
                pytest.raises(WebSocketDisconnect) as e:
            ws.receive_text()
        assert e.value.code == code, (path, e.value.reason)


def test_a_forwarded_connection_idle_past_its_limit_is_closed_with_the_reason(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes both ways keep a forward open; then nothing for the server's forward idle limit
    closes it with 4408 and the reason naming the setting."""
    import socket
    import threading

    from starlette.websockets import WebSocketDisconnect

    import corral.api.port_forward as pf
    from corral.api.limits import ApiLimits

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def echo() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    monkeypatch.setattr(pf, "_target", lambda *_: None)  # a port of this host's worker
    api = build(store, limits=ApiLimits(forward_idle_s=0.3))
    try:
        with api.client.websocket_connect(f"/v1/workloads/any/port-forward?port={port}",
                                          headers=api.ann) as ws, \
                pytest.raises(WebSocketDisconnect) as e:
            assert ws.receive_text() == "ok"
            ws.send_bytes(b"ping")
            assert ws.receive_bytes() == b"ping"
            ws.receive_bytes()
    finally:
        listener.close()
    assert (e.value.code, e.value.reason) == (
        4408, "idle for 0.3 s (the server's CORRAL_API_FORWARD_IDLE_S)")
