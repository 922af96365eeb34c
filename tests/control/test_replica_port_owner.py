"""A replica is ready only when its own process serves its port: a probe answered by another
process (another `corral up` on the host, another tenant's worker) never makes it ready nor
routes traffic to it, and its row names the port's holder (corral.control.port_owners)."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corral.backends.local import LocalBackend, virtual_nodes
from corral.control.cancellation import cancel_service
from corral.control.endpoints import PORT_BASE_ENV, PORT_SPAN, live_routes, port_base, port_of
from corral.control.port_owners import holder_of
from corral.control.probes import ReadinessProber
from corral.control.replicas import PORT_IN_USE
from corral.control.services import READY, REPLICA_READY, replica_state, service_status
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord
from corral.testing.plane import ControlPlane

from .rig import Rig


def _submit(rig: Rig, **fields: Any) -> str:
    spec = {"name": "svc", "queue": "q", "kind": "service", "gpus": 1, "cpu": 0.1,
            "memory": 64, "command": ["serve"], "replicas": 1, "restart_backoff": 5, **fields}
    return rig.submissions.submit(WorkloadSpec.model_validate(spec), "ann",
                                  rig.clock.now())[0].id


class Owner:
    """A fake port check: foreign (a message) until `mine` is set."""

    def __init__(self) -> None:
        self.mine = False
        self.asked: list[tuple[str, int]] = []

    def __call__(self, rec: WorkloadRecord, port: int) -> str | None:
        self.asked.append((rec.id, port))
        return None if self.mine else f"port {port} is held by another process (pid 4242, x)"


@pytest.mark.parametrize("probe", [{"readiness": {"path": "/health", "period_s": 1}}, {}],
                         ids=["readiness-probe", "tcp-check"])
def test_a_port_answered_by_another_process_never_makes_the_replica_ready(
        store: Store, probe: dict[str, Any]) -> None:
    rig, owner = Rig(store), Owner()
    rig.loop.probes = ReadinessProber(rig.store, "local", get=lambda url, t: True,
                                      connect=lambda h, p, t: True, owner=owner)
    r0 = _submit(rig, **probe)
    for _ in range(5):  # the probe passes every time: someone answers at the port
        rig.step()
        assert READY not in [r.state for r in live_routes(rig.loop.live, "local")]
        assert replica_state(rig.get(r0)) != READY
    rec = rig.get(r0)
    assert rec.state == "running" and replica_state(rec) != READY
    assert rec.reason_code == PORT_IN_USE
    assert f"port {port_of(rec)} is held by another process (pid 4242" in rec.reason_message
    assert owner.asked[-1] == (r0, port_of(rec))
    with rig.store.read() as c:
        said = [e for e in W.list_events(c, workload_id=r0) if e.reason == PORT_IN_USE]
        assert service_status(rec.group_id, W.list_workloads(c, group_id=rec.group_id)).ready == 0
    assert len(said) == 1  # said once, not every probe
    owner.mine = True  # the replica's own process now listens there
    rig.step(3)
    rec = rig.get(r0)
    assert rec.reason_code == REPLICA_READY and replica_state(rec) == READY
    assert [r.state for r in live_routes(rig.loop.live, "local")] == [READY]
    asked = len(owner.asked)
    rig.step(3)  # ready: no scan of /proc per probe (its process holds the port)
    assert len(owner.asked) == asked and replica_state(rig.get(r0)) == READY


REPLICA = '''
import http.server, os, pathlib, sys, time
go = pathlib.Path(sys.argv[1])
while not go.exists():  # the test says when to bind: until then a foreign process holds $PORT
    time.sleep(0.05)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["CORRAL_WORKLOAD_ID"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


class _Foreign(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"foreign"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    backend = LocalBackend(tmp_path / "work", nodes=virtual_nodes(1, 1))
    p = ControlPlane.start(tmp_path, backend, queue="serve", grace_s=2.0)
    yield p
    for rec in p.loop.live.records.values():
        if rec.kind == "service" and rec.state not in ("cancelled", "failed", "succeeded"):
            cancel_service(p.store, rec.group_id, time.time(), "test")
    p.run_until(lambda: all(r.state in ("cancelled", "failed", "succeeded")
                            for r in p.loop.live.records.values()), "replicas to end", 120)
    p.store.close()


def _foreign_on_the_port_of(rec: WorkloadRecord, monkeypatch: pytest.MonkeyPatch
                            ) -> ThreadingHTTPServer:
    """A foreign HTTP server on the port `rec` will be given: a free port of the host (tried
    at random, so a concurrent test session's replicas are not touched), made the replica's
    by this server's port base (`CORRAL_REPLICA_PORT_BASE`)."""
    rng = random.Random()  # any free port does; which one is not part of the behaviour
    for _ in range(200):
        port = rng.randrange(33000, 52000)
        try:
            foreign = ThreadingHTTPServer(("127.0.0.1", port), _Foreign)
        except OSError:  # in use: another
            continue
        monkeypatch.setenv(PORT_BASE_ENV, str(port - rec.seq % PORT_SPAN))
        assert port_of(rec) == port
        return foreign
    raise AssertionError("no free port in 33000-52000 after 200 tries")


@pytest.mark.slow
@pytest.mark.parametrize("probe", [{"readiness": {"path": "/healthz", "period_s": 0.2}}, {}],
                         ids=["readiness-probe", "tcp-check"])
def test_a_foreign_listener_on_the_replicas_port_is_never_routed_to(
        plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        probe: dict[str, Any]) -> None:
    script, go = tmp_path / "replica.py", tmp_path / "go"
    script.write_text(REPLICA)
    r0 = plane.submit_spec({"name": "echo", "kind": "service", "gpus": 0, "replicas": 1,
                            "command": [sys.executable, str(script), str(go)],
                            "restart_backoff": 0.5, **probe})[0]
    assert plane.record(r0).state == "pending"  # not launched: the loop has not stepped
    foreign = _foreign_on_the_port_of(plane.record(r0), monkeypatch)  # before it starts
    port = port_of(plane.record(r0))
    threading.Thread(target=foreign.serve_forever, daemon=True).start()

    def never_ready_until_held() -> bool:
        rec = plane.record(r0)
        routed = [r for r in live_routes(plane.loop.live, "local") if r.state == READY]
        assert replica_state(rec) != READY and not routed, (
            f"ready or routed while a foreign process holds port {port}: {rec.reason_code} "
            f"{rec.reason_message!r}, {len(routed)} routed")
        return rec.state == "running" and rec.reason_code == PORT_IN_USE

    try:
        plane.run_until(never_ready_until_held, "PortInUse on the replica", 120)
        for _ in range(10):  # it stays so, probe after probe, while the foreign one answers
            never_ready_until_held()
            plane.loop.step()
            time.sleep(0.1)
    finally:
        foreign.shutdown()
        foreign.server_close()
    rec = plane.record(r0)
    assert f"port {port} is held by another process (pid {os.getpid()}, " in rec.reason_message
    go.touch()  # the port is free: its own process binds it, and only now is it ready
    plane.run_until(lambda: plane.record(r0).reason_code == REPLICA_READY, "r0 ready", 120)
    assert [r.state for r in live_routes(plane.loop.live, "local")] == [READY]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
        assert answer.read() == r0.encode()  # its own process, not the foreign one


def test_holder_of_names_the_listening_process() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Foreign)
    try:
        assert holder_of(server.server_address[1]).startswith(f"pid {os.getpid()}, ")
    finally:
        server.server_close()


@pytest.mark.parametrize("raw", ["x", "80", "52769"])
def test_a_bad_port_base_names_the_setting_and_the_range(monkeypatch: pytest.MonkeyPatch,
                                                          raw: str) -> None:
    monkeypatch.setenv(PORT_BASE_ENV, raw)
    with pytest.raises(ValueError, match=f"{PORT_BASE_ENV}='{raw}'.*integer 1024-52768"):
        port_base()
    monkeypatch.setenv(PORT_BASE_ENV, "30000")
    assert port_base() == 30000
