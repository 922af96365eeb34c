"""`corral exec` end to end on the local backend: a real `corral up`, a running worker, a
command run beside it with its environment and working directory, its exit status passed on,
the timeout enforced, and the rights of logs (a member of another queue hears 404)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from corral.testing.corral_up import CorralServer

pytestmark = pytest.mark.slow  # a real server and worker: ~15 s


def test_exec_runs_beside_the_worker(server: CorralServer, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "sleeper", "queue": "default", "cpu": 0.1, "memory": "64MiB",
        "working_dir": str(tmp_path), "env": {"MARK": "beside-the-worker"},
        "command": [sys.executable, "-c", "import time; time.sleep(120)"]}))
    wid = server.cli_json("submit", str(spec))[0]["workloads"][0]["id"]  # type: ignore[index]
    deadline = time.monotonic() + 60
    with server.client() as c:
        while c.get(wid).state != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
    try:
        got = server.cli("exec", wid, "--", "sh", "-c",
                         'echo "$MARK $CORRAL_WORKLOAD_ID"; pwd; exit 7', check=False)
        assert got.returncode == 7, got.stderr
        mark, cwd = got.stdout.splitlines()
        assert mark == f"beside-the-worker {wid}" and cwd == str(tmp_path)
        slow = server.cli("exec", wid, "--timeout", "0.5", "--", "sleep", "30", check=False)
        assert slow.returncode == 124 and "killed after 0.5s" in slow.stderr
        missing = server.cli("exec", wid, "--", "no-such-program-x", check=False)
        assert missing.returncode != 0 and "not found" in missing.stderr
        other = server.cli("exec", "nope-00000000", "--", "true", check=False)
        assert other.returncode != 0 and "nope-00000000" in other.stderr
    finally:
        server.cli("cancel", wid, check=False)


def test_port_forward_reaches_only_the_workers_own_port(server: CorralServer,
                                                        tmp_path: Path) -> None:
    import subprocess

    import httpx

    from corral.testing.corral_up import free_port

    port = free_port()
    (tmp_path / "hello.txt").write_text("hello through corral\n")
    spec = tmp_path / "web.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "web", "queue": "default", "cpu": 0.1, "memory": "64MiB",
        "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                    "--directory", str(tmp_path)]}))
    wid = server.cli_json("submit", str(spec))[0]["workloads"][0]["id"]  # type: ignore[index]
    fwd = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # running, then listening
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        refused = server.cli("port-forward", wid, str(server.port), check=False)
        assert refused.returncode == 1 and "does not listen on port" in refused.stderr
        fwd = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "port-forward", wid,
                                f"0:{port}"], env=server.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        assert fwd.stdout is not None
        line = fwd.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + fwd.stderr.read()
        local = int(line.split()[2].rsplit(":", 1)[1])
        for _ in range(2):  # two connections, each its own WebSocket
            got = httpx.get(f"http://127.0.0.1:{local}/hello.txt", timeout=10)
            assert got.status_code == 200 and got.text == "hello through corral\n"
    finally:
        if fwd is not None:
            fwd.terminate()
            fwd.communicate(timeout=10)  # closes its pipes too
        server.cli("cancel", wid, check=False)
