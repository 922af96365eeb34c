"""`corral port-forward` says why the server closed a forwarded connection (its idle limit,
4408 and the reason naming the setting) on stderr, one line per connection, as `corral ssh`
does; a connection the local client ends is said nothing about. The real CLI in a subprocess,
against the real API (uvicorn) forwarding to a real TCP echo on this host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from api.harness import build
from corral.api.limits import ApiLimits
from corral.cli.port_forward import closed_line
from corral.store import Store

from .live_api import served

IDLE_S = 0.5


def _echo_port() -> tuple[socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(1024):
            conn.sendall(data)


@pytest.fixture
def api_url(sqlite_store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A real uvicorn serving the API whose forwards reach this host's ports (the worker)."""
    import corral.api.port_forward as pf

    monkeypatch.setattr(pf, "_target", lambda *_: None)
    store = Store(sqlite_store_url)
    store.upgrade()
    api = build(store, limits=ApiLimits(forward_idle_s=IDLE_S))
    with served(api.client.app) as url:
        yield url, api.ann["Authorization"].split()[1]
    store.close()


def test_a_connection_closed_at_the_idle_limit_is_said_once_on_stderr(
        api_url: tuple[str, str]) -> None:
    url, token = api_url
    listener, port = _echo_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    cli = subprocess.Popen(
        [sys.executable, "-m", "corral.cli.main", "port-forward", "wl-1", f"0:{port}",
         "--url", url, "--token", token], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert cli.stdout is not None
        first = cli.stdout.readline()
        assert first.startswith("Forwarding from 127.0.0.1:"), first
        local = int(first.split()[2].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", local), timeout=10) as ended_by_me:
            ended_by_me.sendall(b"hi")
            assert ended_by_me.recv(16) == b"hi"
        with socket.create_connection(("127.0.0.1", local), timeout=10) as idle:
            idle.sendall(b"ping")
            assert idle.recv(16) == b"ping"
            assert idle.recv(16) == b""  # the server closed it at its idle limit
        with socket.create_connection(("127.0.0.1", local), timeout=10) as after:
            after.sendall(b"still")  # the forward goes on for new connections
            assert after.recv(16) == b"still"
    finally:
        cli.terminate()
        _, stderr = cli.communicate(timeout=10)
        listener.close()
    assert stderr.splitlines() == [
        f"connection to wl-1 closed: idle for {IDLE_S} s (the server's CORRAL_API_FORWARD_IDLE_S)"]


@pytest.mark.parametrize(("code", "reason", "line"), [
    pytest.param(1000, "", None, id="either-side-hung-up"),
    pytest.param(None, None, None, id="still-open"),
    pytest.param(4408, "open for 12 h", "connection to w closed: open for 12 h", id="limit"),
    pytest.param(1006, "", "connection to w closed (code 1006)", id="lost-no-reason"),
])
def test_which_closes_are_said(code: int | None, reason: str | None, line: str | None) -> None:
    assert closed_line("w", code, reason) == line
