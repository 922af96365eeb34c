"""WebSocket /v1/workloads/{id}/shell (`corral ssh`): the token and the rights of exec, a worker
that is not running, bad sizes, and a backend without a terminal each refused with a close code
and a reason naming the problem; a shell over its idle or longest-session limit closed with
4408 and the reason, and hung up. The relayed shell (agents): tests/api/test_agent_relay.py."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from starlette.websockets import WebSocketDisconnect

from api.harness import build, job
from corral.api.limits import ApiLimits
from corral.api.websockets import SessionClock
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
    assert got.code == 4501 and "local, agent and Slurm backends only" in got.reason, got.reason
    assert "corral exec" in got.reason


@pytest.fixture
def worker() -> Iterator[int]:
    """A process standing in for a worker; its shell is sh (the host's bash would read
    ~/.bashrc, whose pyenv rehash can wait on a lock)."""
    proc = subprocess.Popen(["sleep", "60"], env={**os.environ, "SHELL": "/bin/sh"})
    yield proc.pid
    proc.kill()
    proc.wait()


def _a_real_shell(monkeypatch: pytest.MonkeyPatch, pid: int) -> list[object]:
    """The endpoint's check answers with a real shell on a terminal beside process `pid`, as
    the local backend's does for a running worker."""
    import corral.api.shell as shell_api
    from corral.backends.worker_shell import open_shell

    opened: list[object] = []

    def _open(*_: object) -> object:
        opened.append(open_shell(pid, 24, 80))
        return opened[-1]

    monkeypatch.setattr(shell_api, "_open", _open)
    return opened


@pytest.mark.parametrize(("limits", "reason"), [
    (ApiLimits(shell_idle_s=0.3), "idle for 0.3 s (the server's CORRAL_API_SHELL_IDLE_S)"),
    (ApiLimits(shell_idle_s=0, shell_max_s=0.5),
     "the session reached its longest, 0.5 s (the server's CORRAL_API_SHELL_MAX_S)"),
], ids=["idle", "longest"])
def test_a_shell_over_a_limit_is_closed_with_the_reason_and_hung_up(
        store: Store, monkeypatch: pytest.MonkeyPatch, worker: int, limits: ApiLimits,
        reason: str) -> None:
    opened = _a_real_shell(monkeypatch, worker)
    api = build(store, limits=limits)
    with api.client.websocket_connect("/v1/workloads/any/shell", headers=api.ann) as ws, \
            pytest.raises(WebSocketDisconnect) as e:
        assert ws.receive_text() == "ok"
        while True:  # the prompt, then nothing
            ws.receive_bytes()
    assert (e.value.code, e.value.reason) == (4408, reason)
    (sh,) = opened
    assert sh.proc.poll() is not None  # type: ignore[attr-defined]


def test_keys_keep_a_shell_open_past_its_idle_limit(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                    worker: int) -> None:
    """Idle is no byte either way: a shell answering keys every 0.1 s outlives a 0.5 s idle
    limit, and ends with its own status."""
    _a_real_shell(monkeypatch, worker)
    api = build(store, limits=ApiLimits(shell_idle_s=0.5))
    with api.client.websocket_connect("/v1/workloads/any/shell", headers=api.ann) as ws:
        assert ws.receive_text() == "ok"
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            ws.send_bytes(b"\r")
            ws.receive_bytes()
            time.sleep(0.1)
        ws.send_bytes(b"exit 4\r")
        message = ws.receive()
        while message.get("text") is None:  # the shell's last output, then its status
            message = ws.receive()
        assert message["text"] == '{"exit": 4}'


@pytest.mark.parametrize(("idle", "longest", "touches", "now", "over"), [
    (60, 600, [], 59.9, None),
    (60, 600, [], 60, "idle"),
    (60, 600, [50], 109, None),  # a byte at 50 moves the idle deadline to 110
    (60, 600, [50], 110, "idle"),
    (60, 600, list(range(30, 600, 30)), 599, None),
    (60, 600, list(range(30, 600, 30)), 600, "longest"),
    (0, 600, [], 599, None),  # no idle limit
    (60, 0, list(range(30, 10_000, 30)), 9_999, None),  # no longest limit
], ids=["quiet", "idle", "touched", "touched-idle", "busy", "busy-longest", "idle-off",
        "longest-off"])
def test_session_clock(idle: float, longest: float, touches: list[float], now: float,
                       over: str | None) -> None:
    clock = SessionClock(idle, longest, started=0.0)
    for t in touches:
        clock.touch(t)
    reason = clock.over(now)
    assert (reason is None) == (over is None), reason
    if over is not None:
        assert reason is not None and over in reason and clock.deadline() <= now
    else:
        assert clock.deadline() > now


def _container_gone(monkeypatch: pytest.MonkeyPatch, api: object, tmp_path: object) -> None:
    """A running worker of an `image:` whose container is not running (its image pulling):
    the local backend finds its process, and open_shell says the container is gone."""
    import corral.api.shell as shell_api
    from corral.backends.worker_shell import ContainerGone

    def gone(*_: object) -> object:
        raise ContainerGone("container corral-x-0-0 is not running (its image may still be "
                            "pulling, or the worker is ending)")

    monkeypatch.setattr(api.backend, "work_dir", tmp_path, raising=False)  # type: ignore[attr-defined]
    monkeypatch.setattr(shell_api, "worker_pid", lambda *_: os.getpid())
    monkeypatch.setattr(shell_api, "open_shell", gone)


def test_a_container_not_running_is_refused_as_not_running(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """4409 (not running, as a worker with no process or a pending workload), not 4422 (bad
    input: the user cannot fix it by changing the request), with a reason naming it."""
    api = build(store, backend_name="local")
    wid = api.client.post("/v1/workloads", json=job(), headers=api.ann).json()[
        "workloads"][0]["id"]
    with store.write() as c:
        c.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(state="running"))
    _container_gone(monkeypatch, api, tmp_path)
    got = _closed(api, f"/v1/workloads/{wid}/shell", api.ann)
    assert got.code == 4409, (got.code, got.reason)
    assert got.reason.startswith("container corral-x-0-0 is not running"), got.reason


def test_an_agent_says_a_container_not_running_as_not_running(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """The agent's verdict (which the server turns into the close code) is 409 as well."""
    import corral.agent.relayed as relayed
    from corral.agent.protocol import ShellOrder
    from corral.backends.worker_shell import ContainerGone

    def gone(*_: object) -> object:
        raise ContainerGone("container corral-x-0-0 is not running")

    monkeypatch.setattr(relayed, "worker_pid", lambda *_: os.getpid())
    monkeypatch.setattr(relayed, "open_shell", gone)
    agent = relayed.Relayed(tmp_path, "https://corral.test", lambda: "x",  # type: ignore[arg-type]
                            lambda *_: None)
    verdict, sh = agent._open_shell(ShellOrder(id="o", workload_id="w", attempt=0, worker=1,
                                               rows=24, cols=80))
    assert sh is None
    assert verdict == "refused 409 container corral-x-0-0 is not running", verdict
