"""`workdir:` on the agent backend end to end: `corral submit FILE` packs and uploads the
directory once (a rerun of the same tree uploads nothing), real agents fetch it by digest and
unpack it into the attempt's directory, and the command runs there."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from corral.sdk.errors import CorralError

from .conftest import Cluster

pytestmark = pytest.mark.slow  # real server and agents; tests/backends/test_workdir_upload.py
                               # and tests/api/test_workdirs_api.py cover the rules in seconds

TRAIN = """
import os, pathlib
print("cwd", os.getcwd())
print("data", pathlib.Path("data.txt").read_text().strip())
print("link", os.readlink("latest"))
"""


def test_the_workdir_is_uploaded_once_and_runs_on_the_agent(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    src = tmp_path / "project" / "src"
    src.mkdir(parents=True)
    (src / "train.py").write_text(TRAIN)
    (src / "data.txt").write_text("forty-two\n")
    (src / "latest").symlink_to("data.txt")
    job = tmp_path / "project" / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "wd", "queue": "default", "cpu": 0.1, "memory": 64, "workdir": "./src",
        "command": [sys.executable, "train.py"]}))
    server = cluster.server
    ids = []
    for _ in range(2):
        out = server.cli_json("submit", str(job))
        ids.append(out[0]["workloads"][0]["id"])  # type: ignore[index]
    with server.client() as c:
        for wid in ids:
            done = c.wait(wid, timeout_s=60)
            assert done.state == "succeeded", (done, server.log())
            assert done.spec["workdir"].startswith("sha256:")
        logs = [c.logs(wid).data for wid in ids]
    for log in logs:
        assert "data forty-two" in log and "link data.txt" in log, log
        cwd = next(line.split(" ", 1)[1] for line in log.splitlines() if line.startswith("cwd"))
        assert cwd.endswith("/workdir") and str(src) not in cwd
        assert any(cwd.startswith(str(a.data_dir)) for a in cluster.agents.values())
    stored = list((server.data_dir / "workdirs").iterdir())
    assert len(stored) == 1  # the second submission found the archive there: no upload
    with server.client() as c, pytest.raises(CorralError) as e:  # a path, through the API
        c.submit({"name": "wd", "queue": "default", "cpu": 0.1, "memory": 64,
                  "workdir": str(src), "command": ["true"]})
    assert "corral submit FILE" in str(e.value.problems), e.value.problems

