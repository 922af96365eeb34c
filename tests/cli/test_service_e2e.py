"""End to end on a real `corral up` (local backend, real processes): a service is kept serving.

Its replicas are a tiny HTTP server (written below) that listens on $PORT and can be told to exit
or be killed; the test reaches them through the control plane's gateway (`/serve/<service>/`)
and through the CLI by the service's id: killed -> back, exit 0 -> back, scale 2 -> 3 -> 1,
a rolling update to a new spec, describe and logs by the service id, cancel by the service id
ends every replica."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from corral.sdk import models as M

from .server_proc import CorralServer, stop_workers

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("replica-ports")]  # replica ports

REPLICA = '''
import http.server, os, sys
PORT = int(os.environ["PORT"])
assert os.environ["CORRAL_PORT"] == str(PORT)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/exit/"):
            self.send_response(200); self.end_headers(); self.wfile.flush()
            os._exit(int(self.path.rsplit("/", 1)[1]))
        body = (f"{os.getpid()} {os.environ['CORRAL_WORKLOAD_ID']} {PORT} "
                f"{os.environ.get('VERSION', '1')}").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass

print("serving on port", PORT, flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    srv = CorralServer(tmp_path_factory.mktemp("corral-serve")).start()
    yield srv
    srv.stop()
    stop_workers(srv.data_dir)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not after {timeout_s}s (last: {last!r})")


def who(url: str) -> tuple[int, str]:
    """(pid, replica id) of the replica answering `url`."""
    pid, rid, _, _ = httpx.get(url, timeout=5).text.split()
    return int(pid), rid


def answering(url: str, replica: str, not_pid: int | None = None) -> Callable[[], int | None]:
    """A check: the pid of `replica`'s own process answering at `url` (not `not_pid`), else None.

    Why a wait and not one read after the service shows the replica ready: the status is the
    last probe's verdict, not the port's state now (a replica can end right after its probe
    passed; the next poll restarts it). And replica ports are 20000 + seq, the same seqs in
    every store: a concurrent test session's replica can hold this port (the xdist group only
    orders this session's tests), answer the probe, and answer here; so the answer must be this
    replica's own (its CORRAL_WORKLOAD_ID), or the test would kill another session's process.
    Stop 33's interim CI run (another pytest session beside it) saw `who(urls[r0])` refused
    right after "2 ready"; two sessions of this kill cycle run at once broke each other."""
    def check() -> int | None:
        try:
            pid, rid = who(url)
        except httpx.TransportError:  # refused / reset: nothing (or a dying process) there
            return None
        return pid if rid == replica and pid != not_pid else None
    return check


def test_a_service_is_kept_serving_scaled_and_cancelled_by_its_id(
        server: CorralServer, tmp_path: Path) -> None:
    script = tmp_path / "replica.py"
    script.write_text(REPLICA)
    spec = {"name": "echo", "queue": "default", "kind": "service", "gpus": 0, "cpu": 0.1,
            "memory": 64, "command": [sys.executable, str(script)], "replicas": 2,
            "min_replicas": 1, "max_replicas": 4, "restart_backoff": 0.5,
            "readiness": {"path": "/healthz", "period_s": 0.3}}
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(spec))
    dry = server.cli("submit", "--dry-run", str(tmp_path / "svc.yaml")).stdout
    assert "readiness: GET /healthz" in dry and "$PORT" in dry
    with server.client() as c:
        sid = c.submit(spec).group_id

        def serving(n: int) -> Callable[[], M.Service | None]:
            def check() -> M.Service | None:
                s = c.service(sid)
                return s if (s.desired, s.ready, s.draining) == (n, n, 0) else None
            return check

        s = wait_for("2 replicas ready", serving(2))
        urls = {r.id: r.url for r in s.replicas}
        assert len(set(urls.values())) == 2 and all(u and u.startswith("http://127.0.0.1:")
                                                     for u in urls.values())
        # through the gateway, by id and by name
        gateway = f"{server.url}/serve/{sid}/hello"
        assert wait_for("the gateway routes", lambda: httpx.get(gateway, timeout=5)
                        .status_code == 200)
        assert who(f"{server.url}/serve/echo/hello")[1] in urls

        r0 = f"{sid}-r0"
        pid = wait_for("r0 answers at its URL", answering(str(urls[r0]), r0))
        os.kill(pid, signal.SIGKILL)  # killed -> back, on the same address
        wait_for("r0 restarted", lambda: c.get(r0).attempt >= 1)
        wait_for("r0 serving again", serving(2))
        wait_for("a new r0 process answers", answering(str(urls[r0]), r0, not_pid=pid))

        attempt = c.get(r0).attempt
        httpx.get(f"{urls[r0]}/exit/0", timeout=5)  # exit 0 -> back too: it never "succeeds"
        wait_for("r0 restarted after exit 0", lambda: c.get(r0).attempt > attempt)
        wait_for("r0 serving after exit 0", serving(2))
        assert "succeeded" not in [e.to_state for e in c.events(r0).items]
        assert any(e.reason == "ReplicaRestarting" for e in c.events(r0).items)

        assert "3 desired" in server.cli("scale", sid, "3").stdout
        wait_for("3 replicas ready", serving(3))
        server.cli("scale", sid, "1")
        s = wait_for("1 replica left", serving(1))
        assert [r.id for r in s.replicas if r.state == "ready"] == [r0]
        refused = server.cli("scale", sid, "5", check=False)
        assert refused.returncode != 0 and "max_replicas" in refused.stderr + refused.stdout

        # a rolling update: the new spec's replica serves, the old one is replaced
        (tmp_path / "v2.yaml").write_text(yaml.safe_dump({**spec, "env": {"VERSION": "2"}}))
        assert "rolling out" in server.cli("update", sid, str(tmp_path / "v2.yaml")).stdout
        s = wait_for("the update done", lambda: (x := serving(1)()) and x.replicas[-1].state
                     == "ready" and x)
        assert [r.index for r in s.replicas if r.state == "ready"] == [s.replicas[-1].index]
        assert httpx.get(f"{server.url}/serve/{sid}/v", timeout=5).text.split()[3] == "2"
        assert any(e.reason == "Replaced" for e in c.events(r0).items)

        described = server.cli_json("describe", sid)
        assert isinstance(described, dict) and described["desired"] == 1
        assert "serving on port" in server.cli("logs", sid).stdout

        server.cli("cancel", sid)
        s = wait_for("every replica ended", lambda: (x := c.service(sid)).state == "ended" and x)
        assert {r.workload_state for r in s.replicas} == {"cancelled"}
        wait_for("the gateway forgets it",
                 lambda: httpx.get(gateway, timeout=5).status_code == 404)
