"""`corral exec`, `corral port-forward` and `corral ssh` on the agent backend, relayed by the
server to the worker's agent (`corral.api.agent_relay`, `corral.agent.relayed`): a real `corral
up --backend agent`, two real agents, a running worker. The command runs on the worker's host
with its environment and exit status; the timeout and a missing program are reported as on the
local backend; a forward reaches the worker's own port and no other port of the host; a shell
on a terminal sees the worker's environment and directory, takes a resize, returns its status,
and one left idle past the server's limit (8 s here) is closed with the reason printed and hung
up on its host; and the worker's log lines carry their times (`corral logs
--timestamps/--since`)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.testing.corral_up import free_port
from corral.testing.terminal import Terminal, set_size

from .conftest import Cluster

pytestmark = pytest.mark.slow  # real server and agents (~20 s); tests/api/test_exec_api.py
                               # covers the rights in seconds

#: the server's shell idle limit here: short enough to wait for, long enough for a typist
SHELL_IDLE_S = 8


@pytest.fixture(autouse=True)
def _short_shell_idle(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Before the cluster starts: `corral up` reads its limits from the environment."""
    monkeypatch.setenv("CORRAL_API_SHELL_IDLE_S", str(SHELL_IDLE_S))
    yield


def _running(cluster: Cluster, spec: dict[str, object]) -> str:
    with cluster.server.client() as c:
        wid = c.submit(spec).workloads[0].id
        deadline = time.monotonic() + 60
        while c.get(wid).state != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get(wid).state == "running", cluster.server.log()
    return wid


def _log_times(cluster: Cluster, wid: str) -> None:
    """`corral logs --timestamps / --since` on agents: the server served the GETs, whose
    lines the worker logged; each is dated (the runner's samples shipped by the agent)."""
    server = cluster.server
    dated = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
    stamped: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = server.cli("logs", wid, "--timestamps", check=False)
        assert got.returncode == 0, got.stderr
        stamped = [line for line in got.stdout.splitlines() if "hello.txt" in line]
        # a line's bytes may reach the server a sync before the runner's sample that dates it
        # (a line is late by at most one look): undated ("-") until then, never wrongly dated
        if len(stamped) >= 2 and all(dated.match(line) for line in stamped):
            break
        assert all(dated.match(line) or line.startswith("- ") for line in stamped), stamped
        time.sleep(0.5)
    assert len(stamped) >= 2, stamped
    assert all(dated.match(line) for line in stamped), stamped
    assert "hello.txt" in server.cli("logs", wid, "--since", "1h").stdout
    assert server.cli("logs", wid, "--since", "2999-01-01").stdout == ""


def _ssh(cluster: Cluster, wid: str) -> None:
    """`corral ssh` through the worker's agent, on a terminal of the test's own."""
    cwd = cluster.server.cli("exec", wid, "--", "pwd").stdout.strip()  # the worker's
    term = Terminal(cluster.server.env(), "ssh", wid)
    try:
        term.wait_raw()
        term.send('stty size; echo "M=$MARK N=$CORRAL_NODE_ID"; pwd\r')
        term.expect("40 100")
        term.expect("M=beside-the-worker N=host-")
        term.expect(cwd)
        set_size(term.master, 33, 111)  # as a terminal emulator resizes
        term.proc.send_signal(signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while b"33 111" not in term.seen and time.monotonic() < deadline:
            term.send("stty size\r")
            term.read(0.5)
        term.expect("33 111", timeout=1)
        term.send("exit 3\r")
        assert term.close() == 3, term.seen
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    idle = Terminal(cluster.server.env(), "ssh", wid)
    idle.wait_raw()
    idle.send("echo pid=$$ | tr p P\r")  # Pid=N: the output, never the typed line
    while (found := re.search(rb"Pid=(\d+)\r\n", idle.seen)) is None:
        assert idle.read(20), idle.seen
    pid = int(found.group(1))
    assert idle.close(timeout=SHELL_IDLE_S + 30) == 255  # nothing typed: the server closes it
    assert f"idle for {SHELL_IDLE_S} s".encode() in idle.seen, idle.seen
    assert b"CORRAL_API_SHELL_IDLE_S" in idle.seen
    deadline = time.monotonic() + 15  # its host hangs it up
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the idle shell outlived its session"


def test_exec_port_forward_and_ssh_reach_the_worker_on_its_agent(cluster: Cluster,
                                                                 tmp_path: object) -> None:
    server = cluster.server
    port = free_port()
    web = str(cluster.tmp / "web")
    (cluster.tmp / "web").mkdir()
    (cluster.tmp / "web" / "hello.txt").write_text("hello through the agent\n")
    wid = _running(cluster, {
        "name": "web", "queue": "default", "cpu": 0.1, "memory": 64,
        # sh: this host's bash reads ~/.bashrc, whose pyenv rehash can wait on a lock
        "env": {"MARK": "beside-the-worker", "SHELL": "/bin/sh"},
        "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                    "--directory", web]})
    fwd = None
    try:
        got = server.cli("exec", wid, "--", "sh", "-c",
                         'echo "$MARK $CORRAL_WORKLOAD_ID $CORRAL_NODE_ID"; exit 7', check=False)
        assert got.returncode == 7, got.stderr
        mark, seen, node = got.stdout.split()
        assert (mark, seen) == ("beside-the-worker", wid) and node in cluster.agents
        slow = server.cli("exec", wid, "--timeout", "0.5", "--", "sleep", "30", check=False)
        assert slow.returncode == 124 and "killed after 0.5s" in slow.stderr, slow.stderr
        missing = server.cli("exec", wid, "--", "no-such-program-x", check=False)
        assert missing.returncode != 0 and "not found" in missing.stderr

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # running, then listening
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        refused = server.cli("port-forward", wid, str(server.port), check=False)
        assert refused.returncode == 1 and "does not listen on port" in refused.stderr, (
            refused.stderr)
        fwd = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "port-forward", wid,
                                f"0:{port}"], env=server.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        assert fwd.stdout is not None
        line = fwd.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + fwd.stderr.read()
        local = int(line.split()[2].rsplit(":", 1)[1])
        for _ in range(2):  # two connections, each its own relayed tunnel
            r = httpx.get(f"http://127.0.0.1:{local}/hello.txt", timeout=20)
            assert r.status_code == 200 and r.text == "hello through the agent\n"
        _ssh(cluster, wid)
        audit = server.cli("audit", "--json", check=False).stdout
        assert "workload.exec" in audit and "workload.port_forward" in audit
        assert "workload.ssh" in audit
        _log_times(cluster, wid)
    finally:
        if fwd is not None:
            fwd.terminate()
            fwd.communicate(timeout=10)
        server.cli("cancel", wid, check=False)
