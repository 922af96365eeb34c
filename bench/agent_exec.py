"""How long `corral exec` takes relayed through an agent vs on the local backend (issue 13),
and `corral ssh`'s shell: the time to open one (upgrade to the server's "ok": on agents the
order, the agent's dial-back and the shell's start) and a typed line's round trip through it.

Starts a real `corral up` per backend (local; agent with one real `corral agent`), one sleeping
worker each, then times N `POST /v1/workloads/{id}/exec` of `true` back to back, and prints the
median and p90 of each and their ratio. The relay's cost is the wait for the agent's sync to
take the order (the server's long poll looks every 0.25 s; the agent's sync waits at most 0.5 s
while a worker runs) plus the answer's POST.

    .venv/bin/python bench/agent_exec.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from corral.testing.corral_up import CorralServer, stop_workers

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


def _running(srv: CorralServer) -> str:
    with srv.client() as c:
        # sh, not the host's bash: no rc file (this machine's ~/.bashrc runs pyenv, which
        # can wait seconds on a lock) in the shells' figures
        wid = c.submit({"name": "sleeper", "queue": "default", "cpu": 0.1, "memory": 64,
                        "env": {"SHELL": "/bin/sh"}, "command": SLEEP}).workloads[0].id
        deadline = time.monotonic() + 60
        while c.get(wid).state != "running":
            if time.monotonic() > deadline:
                raise SystemExit(f"not running: {srv.log()}")
            time.sleep(0.2)
    return wid


def _times(srv: CorralServer, wid: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=srv.url, timeout=60,
                      headers={"Authorization": f"Bearer {srv.token}"}) as http:
        for _ in range(n):
            t = time.perf_counter()
            r = http.post(f"/v1/workloads/{wid}/exec", json={"argv": ["true"]})
            out.append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    return out


def _shell_times(srv: CorralServer, wid: str, n: int) -> tuple[list[float], list[float]]:
    """n shells opened (seconds to "ok"), and n lines typed into the last one (seconds until
    the shell's answer comes back)."""
    from websockets.sync.client import connect

    url = srv.url.replace("http://", "ws://", 1) + f"/v1/workloads/{wid}/shell"
    headers = {"Authorization": f"Bearer {srv.token}"}
    opens, lines = [], []
    for i in range(n):
        t = time.perf_counter()
        ws = connect(url, additional_headers=headers, max_size=None)
        assert ws.recv(timeout=30) == "ok"
        opens.append(time.perf_counter() - t)
        if i < n - 1:
            ws.close()
    first = ws.recv(timeout=30)  # the shell's prompt: it is up, lines are timed from here
    seen = first if isinstance(first, bytes) else b""
    for i in range(n):
        t = time.perf_counter()
        ws.send(f"echo A$((1+{i}))\r".encode())  # the answer, never the typed line, has A<i+1>
        while f"A{i + 1}\r\n".encode() not in seen:
            try:
                message = ws.recv(timeout=10)
            except TimeoutError:
                raise SystemExit(f"no answer to line {i}: {seen[-300:]!r}") from None
            seen += message if isinstance(message, bytes) else b""
        lines.append(time.perf_counter() - t)
    ws.close()
    return opens, lines


def _agent(srv: CorralServer, root: Path) -> subprocess.Popen[bytes]:
    token = json.loads(srv.cli("agent-tokens", "create", "--json").stdout)["token"]
    return subprocess.Popen(
        [sys.executable, "-m", "corral.agent", "--server", srv.url, "--data-dir",
         str(root / "agent"), "--node-id", "host-a", "--gpus", "4", "--gpu-model",
         "virtual-gpu", "--cpu", "16", "--memory-mib", "65536", "--address", "127.0.0.1",
         "--worker-user", "same", "--join-token", token],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(n: int) -> None:
    results = {}
    for backend in ("local", "agent"):
        root = Path(tempfile.mkdtemp(prefix=f"bench-exec-{backend}-"))
        srv = CorralServer(root / "cp").start("--backend", backend)
        agent = _agent(srv, root) if backend == "agent" else None
        try:
            deadline = time.monotonic() + 60
            with srv.client() as c:
                while agent is not None and not c.nodes():  # joined
                    if time.monotonic() > deadline:
                        raise SystemExit("the agent did not join")
                    time.sleep(0.2)
            wid = _running(srv)
            _times(srv, wid, 2)  # warm up
            results[backend] = _times(srv, wid, n)
            opens, lines = _shell_times(srv, wid, n)
            results[f"{backend} ssh open"], results[f"{backend} ssh line"] = opens, lines
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(10)
            srv.stop()
            stop_workers(srv.data_dir)
            if agent is not None:
                stop_workers(root / "agent")
    load = os.getloadavg()[0]
    for what, t in results.items():
        q = statistics.quantiles(t, n=10)
        label = f"exec via {what}" if what in ("local", "agent") else what
        print(f"{label:16s}: n={n} median {statistics.median(t) * 1000:.1f} ms, "
              f"p90 {q[-1] * 1000:.1f} ms (load {load:.1f})")
    for what in ("", " ssh open", " ssh line"):
        ratio = (statistics.median(results[f"agent{what}"])
                 / statistics.median(results[f"local{what}"]))
        print(f"agent / local median{what or ' exec'}: {ratio:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
