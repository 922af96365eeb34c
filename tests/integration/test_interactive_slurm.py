"""`corral exec`, `corral ssh` and `corral port-forward` end to end on a real Slurm: a real
`corral up --backend slurm` on the session's harness cluster (slurmctld + slurmd, started by
the tests), a running worker (in a warm-slot pilot, the default), and the CLI reaching it
through a step inside the worker's own job (`corral.backends.slurm_exec`): the worker's
environment, working directory and Slurm's CUDA_VISIBLE_DEVICES seen, a shell typed into, a
forward to the HTTP server the worker started, and the example notebook run in a browser
through that forward. Waits on conditions with generous timeouts
(a loaded 2-core box: Slurm and the server share it with the other tests)."""

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
import yaml

from corral.testing.corral_up import CorralServer, free_port
from corral.testing.slurm import MARKER_ENV, SlurmCluster
from corral.testing.terminal import Terminal, set_size

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _until(check: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[CorralServer]:
    env = slurm_cluster.env
    srv = CorralServer(tmp_path_factory.mktemp("corral-slurm-interactive"),
                       extra_env={"SLURM_CONF": env["SLURM_CONF"],
                                  MARKER_ENV: env[MARKER_ENV]})
    srv.start("--backend", "slurm", timeout=180)
    try:
        yield srv
    finally:
        srv.stop()
        slurm_cluster.cancel_all_jobs()


class Web:
    """A running worker on Slurm: an HTTP server on `port`, in `home` (its working dir)."""

    def __init__(self, wid: str, port: int, home: Path) -> None:
        self.wid, self.port, self.home = wid, port, home


@pytest.fixture(scope="module")
def web(server: CorralServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    home = tmp_path_factory.mktemp("slurm-web")
    home.chmod(0o777)
    (home / "hello.txt").write_text("hello through slurm\n")
    port = free_port()
    spec = home / "web.yaml"
    # the worker notes what it was given before serving, for the test to compare
    spec.write_text(yaml.safe_dump({
        "name": "web", "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
        "working_dir": str(home), "env": {"MARK": "on-the-slurm-node"},
        "command": ["sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES" > given.txt; exec '
                    f'{sys.executable} -m http.server {port} --bind 127.0.0.1'],
}))
    wid = str(server.cli_json("submit", str(spec))[0]["workloads"][0]["id"])  # type: ignore[index]

    def serving() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/hello.txt", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        with server.client() as c:
            _until(lambda: c.get(wid).state == "running", "the worker to run", 180)
        _until(serving, "the worker's HTTP server", 120)
        yield Web(wid, port, home)
    finally:
        server.cli("cancel", wid, check=False)


def test_exec_runs_in_the_workers_job_with_its_environment(server: CorralServer,
                                                           web: Web) -> None:
    got = server.cli("exec", web.wid, "--", "sh", "-c",
                     'echo "$MARK $CORRAL_WORKLOAD_ID $CUDA_VISIBLE_DEVICES"; pwd; '
                     # the parent of the step's helper (our parent): Slurm's step daemon
                     "cat /proc/$(cut -d' ' -f4 /proc/$PPID/stat)/comm; exit 7", check=False)
    assert got.returncode == 7, got.stderr
    mark, cwd, launcher = got.stdout.splitlines()
    assert launcher == "slurmstepd"
    given = (web.home / "given.txt").read_text().strip()
    assert given != "" and mark == f"on-the-slurm-node {web.wid} {given}"
    assert cwd == str(web.home)
    slow = server.cli("exec", web.wid, "--timeout", "0.5", "--", "sleep", "30", check=False)
    assert slow.returncode == 124 and "killed after 0.5s" in slow.stderr
    missing = server.cli("exec", web.wid, "--", "no-such-program-x", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_port_forward_reaches_the_workers_server_through_a_relay_step(
        server: CorralServer, web: Web) -> None:
    refused = server.cli("port-forward", web.wid, str(server.port), check=False)
    assert refused.returncode == 1 and "does not listen on port" in refused.stderr
    fwd = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "port-forward", web.wid,
                            f"0:{web.port}"], env=server.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert fwd.stdout is not None
        line = fwd.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + fwd.stderr.read()  # type: ignore[union-attr]
        local = int(line.split()[2].rsplit(":", 1)[1])
        for _ in range(2):  # two connections, each its own WebSocket and relay step
            got = httpx.get(f"http://127.0.0.1:{local}/hello.txt", timeout=60)
            assert got.status_code == 200 and got.text == "hello through slurm\n"
    finally:
        fwd.terminate()
        fwd.communicate(timeout=30)


def test_ssh_opens_a_shell_on_the_workers_node(server: CorralServer, web: Web) -> None:
    term = Terminal(server.env(), "ssh", web.wid)
    try:
        term.wait_raw(timeout=60)
        term.send('stty size; echo "M=$MARK"; pwd\r')
        term.expect("40 100", timeout=60)
        term.expect("M=on-the-slurm-node", timeout=30)
        term.expect(str(web.home), timeout=30)
        set_size(term.master, 33, 111)  # a resize reaches the shell through srun
        term.proc.send_signal(signal.SIGWINCH)
        deadline = time.monotonic() + 60
        while b"33 111" not in term.seen and time.monotonic() < deadline:
            term.send("stty size\r")
            term.read(1.0)
        term.expect("33 111", timeout=1)
        term.send("echo $CORRAL_WORKLOAD_ID; exit 3\r")
        term.expect(web.wid, timeout=30)
        assert term.close(timeout=60) == 3
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


def test_a_client_that_leaves_ends_the_shells_step(server: CorralServer, web: Web) -> None:
    term = Terminal(server.env(), "ssh", web.wid)
    term.wait_raw(timeout=60)
    term.send("echo pid=$$ | tr p P\r")  # Pid=N: the output, never the typed line
    deadline = time.monotonic() + 60
    while (found := re.search(rb"Pid=(\d+)\r\n", term.seen)) is None:
        assert time.monotonic() < deadline and term.read(5) is not None, term.seen
    pid = int(found.group(1))  # the harness's nodes are this host: its pid is ours to see
    assert Path(f"/proc/{pid}").exists()
    term.proc.kill()  # no goodbye: a lost connection
    term.close()
    _until(lambda: not Path(f"/proc/{pid}").exists(), "the shell to end with its client", 60)



def test_the_example_notebook_runs_a_cell_in_a_browser_through_slurm(
        server: CorralServer, tmp_path: Path, chromium_launch_kwargs: dict[str, object]) -> None:
    """examples/notebook.yaml as on the local backend (test_notebook_browser.py): its token a
    secret, JupyterLab in a Slurm job, opened in headless Chromium through `corral
    port-forward` (a relay step per connection, the kernel's WebSocket included), 6*7 run."""
    pytest.importorskip("jupyterlab")
    from .test_notebook_browser import run_example_in_chromium

    tmp_path.chmod(0o777)
    run_example_in_chromium(server, tmp_path, chromium_launch_kwargs, "notebook-through-slurm",
                            patience_s=120, forward_exit_s=30)
