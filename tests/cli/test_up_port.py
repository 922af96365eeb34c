"""`corral up` on a port that is taken says so, exits non-zero and leaves nothing behind that
would point the CLI at someone else's server; a stopped server forgets its server.json."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from corral.backends.worker_users import unreachable_by_others

from .server_proc import CorralServer


def test_up_on_a_taken_port_fails_before_starting_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "corral.cli.main", "up", "--data-dir",
                            str(data), "--port", str(port), "--worker-user", "same"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"127.0.0.1:{port} is already in use" in r.stderr
    assert "corral is up" not in r.stdout and "admin token" not in r.stdout
    assert not (data / "server.json").exists()
    assert not (data / "admin-token").exists()  # nothing was started: no store, no admin


def test_up_with_a_bad_replica_port_base_names_the_setting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "corral.cli.main", "up", "--data-dir", str(data),
                        "--port", "0", "--worker-user", "same"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200", "CORRAL_REPLICA_PORT_BASE": "80"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "CORRAL_REPLICA_PORT_BASE='80'" in r.stderr and "1024-52768" in r.stderr
    assert not (data / "server.json").exists()


def test_a_stopped_server_removes_its_server_file(tmp_path: Path) -> None:
    srv = CorralServer(tmp_path / "data").start()
    try:
        assert (srv.data_dir / "server.json").is_file()
    finally:
        srv.stop()
    assert not (srv.data_dir / "server.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="worker users exist only when corral is root")
def test_up_warns_when_worker_users_cannot_run_the_interpreter(tmp_path: Path) -> None:
    """Issue 14: said at start, with the fix, rather than every job failing with exit 126."""
    reachable = unreachable_by_others([(Path(sys.executable), True),
                                       (Path(os.path.realpath(sys.executable)), True)])
    if reachable is None:
        pytest.skip(f"{sys.executable} is reachable by other users here")
    with socket.socket() as holder:  # a taken port: up stops right after its checks
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        r = subprocess.run([sys.executable, "-m", "corral.cli.main", "up", "--data-dir",
                            str(tmp_path / "data"), "--port", str(holder.getsockname()[1]),
                            "--worker-user", "per-queue"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "COLUMNS": "300"})
    assert "cannot run" in r.stderr and "exit 126" in r.stderr, r.stderr
    assert "--worker-user same" in r.stderr
