"""`corral ssh` end to end on the local backend: a real `corral up`, a running worker, the CLI
on a pseudo-terminal of the test's own (as a user's terminal), a shell typed into: the
worker's environment seen, a resize passed on, the shell's exit status returned."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from corral.testing.corral_up import CorralServer
from corral.testing.terminal import Terminal, set_size

pytestmark = pytest.mark.slow  # a real server and worker (the module shares one): ~6 s


def _running(server: CorralServer, tmp_path: Path) -> str:
    spec = tmp_path / "box.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "box", "queue": "default", "cpu": 0.1, "memory": "64MiB", "kind": "interactive",
        "working_dir": str(tmp_path), "env": {"MARK": "in-the-box"},
        "command": [sys.executable, "-c", "import time; time.sleep(120)"]}))
    wid = str(server.cli_json("submit", str(spec))[0]["workloads"][0]["id"])  # type: ignore[index]
    deadline = time.monotonic() + 60
    with server.client() as c:
        while c.get(wid).state != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
    return wid


def test_ssh_shell_sees_the_worker_and_returns_its_status(server: CorralServer,
                                                          tmp_path: Path) -> None:
    wid = _running(server, tmp_path)
    term = Terminal(server.env(), "ssh", wid)
    try:
        term.wait_raw()
        # the size at the start, the worker's environment and working directory
        term.send('stty size; echo "M=$MARK"; pwd\r')
        term.expect("40 100")
        term.expect("M=in-the-box")
        term.expect(str(tmp_path))
        # a resize on this side (SIGWINCH, as a terminal emulator sends) reaches the shell
        set_size(term.master, 33, 111)
        term.proc.send_signal(signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while b"33 111" not in term.seen and time.monotonic() < deadline:
            term.send("stty size\r")
            term.read(0.5)
        term.expect("33 111", timeout=1)
        term.send("echo $CORRAL_WORKLOAD_ID; exit 3\r")
        term.expect(wid)
        assert term.close() == 3
    finally:
        server.cli("cancel", wid, check=False)


def test_ssh_refusals_name_the_problem(server: CorralServer) -> None:
    gone = server.cli("ssh", "nope-00000000", check=False)
    assert gone.returncode == 1 and "nope-00000000" in gone.stderr


def test_a_client_that_leaves_hangs_the_shell_up(server: CorralServer, tmp_path: Path) -> None:
    wid = _running(server, tmp_path)
    term = Terminal(server.env(), "ssh", wid)
    try:
        term.wait_raw()
        term.send("echo pid=$$ | tr p P\r")  # Pid=N: the output, never the typed line
        while (found := re.search(rb"Pid=(\d+)\r\n", term.seen)) is None:
            assert term.read(20), term.seen
        pid = int(found.group(1))
        term.proc.kill()  # no goodbye: a lost connection
        term.close()
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "the shell outlived its client"
    finally:
        server.cli("cancel", wid, check=False)
