"""Secrets end to end on the local backend: a real `corral up`, the CLI setting a secret from
standard input, a real worker process reading it from its environment, and the value found in
none of what corral answers, logs or keeps in its database."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corral.testing.corral_up import CorralServer

# a real server and workers: tens of seconds under load; tests/api/test_secrets.py and
# tests/control/test_secret_launch.py cover the same rules in seconds
pytestmark = pytest.mark.slow

VALUE = "hf_e2e-Secret-Value-9b1d"
DIGEST = hashlib.sha256(VALUE.encode()).hexdigest()


def _cli(srv: CorralServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args], env=srv.env(),
                          cwd=srv.data_dir, input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_a_secret_reaches_the_worker_and_nothing_else(server: CorralServer,
                                                      tmp_path: Path) -> None:
    refused = _cli(server, "secrets", "set", "hf-token", VALUE)
    assert refused.returncode == 2 and "shell history" in refused.stderr
    made = _cli(server, "secrets", "set", "hf-token", "--queue", "default", "-",
                stdin=VALUE + "\n")
    assert made.returncode == 0, made.stderr
    assert "created secret hf-token for queue default" in made.stdout
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "uses-secret", "queue": "default", "cpu": 0.1, "memory": "64MiB",
        "env": {"HF_TOKEN": {"secret": "hf-token"}},
        "command": [sys.executable, "-c", "import hashlib, os; print(hashlib.sha256("
                    "os.environ['HF_TOKEN'].encode()).hexdigest())"]}))
    dry = _cli(server, "submit", "--dry-run", str(spec))
    assert "secret 'hf-token'" in dry.stdout, dry.stdout + dry.stderr
    out = server.cli_json("submit", str(spec))
    wid = out[0]["workloads"][0]["id"]  # type: ignore[index]
    with server.client() as c:
        assert c.wait(wid, timeout_s=60).state == "succeeded"
        logs = c.logs(wid).data
    assert DIGEST in logs  # the worker saw exactly the value (trailing newline dropped)
    seen = [logs, dry.stdout, _cli(server, "describe", wid).stdout,
            _cli(server, "secrets", "ls").stdout, _cli(server, "audit").stdout,
            server.cli("ls", "--json").stdout, server.log()]
    assert "hf-token" in seen[3]
    assert not [s for s in seen if VALUE in s]
    for name in ("corral.db", "corral.db-wal"):
        path = server.data_dir / name
        if path.exists():
            assert VALUE.encode() not in path.read_bytes(), name
    key = server.data_dir / "secret-key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_a_missing_secret_is_refused_at_submission(server: CorralServer,
                                                   tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"name": "missing", "queue": "default",
                                    "env": {"TOKEN": {"secret": "not-there"}},
                                    "command": ["true"]}))
    r = _cli(server, "submit", str(spec))
    assert r.returncode != 0
    assert "env.TOKEN" in r.stderr and "corral secrets set not-there" in r.stderr
