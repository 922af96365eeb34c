"""Limits and tenancy against a real `corral up` (uvicorn, httptools) on SQLite and PostgreSQL,
over raw sockets where the point is what the server does before a body arrives: 401 and 413
without reading the body, 408 for a trickling body, a closed connection for trickling headers,
429 with Retry-After; NUL characters through the real stack (500s on PostgreSQL before); and the
users / tokens / members CLI, with a revoked token refused on the next command."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.sdk import Client
from corral.testing.corral_up import CorralServer, stop_workers
from corral.testing.postgres import PostgresServer

pytestmark = pytest.mark.slow  # a real `corral up`, both stores: ~20 s

LIMITS = {"CORRAL_API_BODY_TIMEOUT_S": "1", "CORRAL_API_HEADER_TIMEOUT_S": "1",
          "CORRAL_API_RATE_PER_S": "1", "CORRAL_API_BURST": "5"}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[CorralServer]:
    db = None
    if request.param == "postgres":
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        db = pg.create_database("api_live_limits")
    srv = CorralServer(tmp_path_factory.mktemp(f"limits-{request.param}"), db=db,
                       extra_env=dict(LIMITS)).start("--no-scheduler")
    # the admin's own work here must not be slowed by the 1/s default: an unlimited token
    with srv.client() as c:
        srv.extra_env["CORRAL_TOKEN"] = c.create_token(name="tests", rate_per_s=0).token
    yield srv
    srv.stop()
    stop_workers(srv.data_dir)


def _raw(server: CorralServer, head: bytes, body: bytes = b"", wait_s: float = 10.0) -> bytes:
    """Send `head` (and `body`), then read until the server closes; TimeoutError if it has not
    after `wait_s` (the server's own limits are 1 s)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as s:
        s.sendall(head + body)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def _head(method: str, path: str, token: str | None, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_401_comes_before_a_100_mb_body_is_sent(server: CorralServer) -> None:
    reply = _raw(server, _head("POST", "/v1/workloads", None, Content_Length=str(100 << 20)))
    assert reply.startswith(b"HTTP/1.1 401") and b'"unauthorized"' in reply


def test_413_comes_before_a_declared_2_mib_body_is_sent(server: CorralServer) -> None:
    token = server.extra_env["CORRAL_TOKEN"]
    reply = _raw(server, _head("POST", "/v1/queues", token, Content_Length=str(2 << 20)))
    assert reply.startswith(b"HTTP/1.1 413") and b'"too_large"' in reply


def test_a_trickling_body_gets_408_and_the_connection_closed(server: CorralServer) -> None:
    token = server.extra_env["CORRAL_TOKEN"]
    reply = _raw(server, _head("POST", "/v1/queues", token, Content_Length="500"), b'{"na')
    assert reply.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in reply


def test_trickling_headers_get_the_connection_closed(server: CorralServer) -> None:
    reply = _raw(server, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert reply == b""  # closed by the server, with nothing to say


def test_a_token_over_its_rate_gets_429_with_retry_after(server: CorralServer) -> None:
    with server.client(server.extra_env["CORRAL_TOKEN"]) as admin:
        admin.create_user("rita", queues=[])
        slow = admin.create_token(user="rita").token
    codes, headers = [], {}
    with Client(server.url, slow) as c:
        for _ in range(8):
            r = c._http.get("/v1/whoami")
            codes.append(r.status_code)
            headers = dict(r.headers) if r.status_code == 429 else headers
    assert codes[:5] == [200] * 5 and 429 in codes[5:]
    assert int(headers["retry-after"]) >= 1


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/workloads/%00", None),
    ("GET", "/v1/workloads?user=%00", None),
    ("POST", "/v1/nodes/%00/cordon", None),
    ("POST", "/v1/ledger/grants", {"queue": "default", "amount": "1", "memo": "\u0000"}),
], ids=["workload-id", "user-filter", "cordon", "grant-memo"])
def test_a_nul_is_422_through_the_real_stack(server: CorralServer, method: str, path: str,
                                             body: object) -> None:
    with server.client(server.extra_env["CORRAL_TOKEN"]) as c:
        r = c._http.request(method, path, json=body)
    assert r.status_code == 422 and r.json()["problems"], r.text


def test_users_tokens_and_members_through_the_cli(server: CorralServer, tmp_path: Path) -> None:
    made = server.cli_json("users", "add", "bob", "--queue", "default")
    bob = made["token"]
    assert server.cli_json("members", "ls", "default") == [
        {"user": "bob", "queue": "default", "role": "member"}]
    server.cli("members", "add", "default", "bob", "--role", "viewer")
    me = server.cli_json("whoami", "--token", bob)
    assert me["memberships"] == {"default": "viewer"}
    second = server.cli_json("tokens", "create", "--token", bob, "--name", "laptop",
                             "--expires", "30d")
    listed = server.cli_json("tokens", "ls", "--token", bob)
    assert [t["name"] for t in listed] == ["", "laptop"] and listed[1]["expires_at"]
    server.cli("tokens", "revoke", str(second["info"]["id"]), "--token", bob)
    refused = server.cli("whoami", "--token", second["token"], check=False)
    assert refused.returncode == 1 and "revoked" in refused.stderr
    assert "Traceback" not in refused.stderr
    server.cli("members", "rm", "default", "bob")
    assert "bob" in [u["name"] for u in server.cli_json("users", "ls")]
    server.cli("users", "rm", "bob")
    gone = server.cli("whoami", "--token", bob, check=False)
    assert gone.returncode == 1
    actions = [e["action"] for e in server.cli_json("audit")["items"]]
    assert actions[-5:] == ["member.set", "token.create", "token.revoke", "member.remove",
                            "user.delete"]


def test_concurrent_retries_with_one_idempotency_key_store_one_submission(
        server: CorralServer) -> None:
    """Eight clients send the same submission with the same key at once (a client retrying on
    several connections): one group is stored, and every answer names it."""
    spec = {"name": "once", "queue": "default", "gpus": 1, "command": ["true"]}
    barrier, answers = threading.Barrier(8), []

    def send() -> None:
        with server.client(server.extra_env["CORRAL_TOKEN"]) as c:
            barrier.wait()
            r = c._http.post("/v1/workloads", json=spec, headers={"Idempotency-Key": "once-1"})
            answers.append((r.status_code, r.json()["group_id"]))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 8 and len({g for _, g in answers}) == 1
    assert sorted(s for s, _ in answers) == [200] * 7 + [201]
    with server.client(server.extra_env["CORRAL_TOKEN"]) as c:
        assert len(list(c.iter_workloads(group=answers[0][1]))) == 1
        assert [w.name for w in c.iter_workloads()].count("once") == 1
