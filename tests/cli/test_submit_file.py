"""`corral submit FILE` against a real server: all or nothing, each refusal named by its item,
the field meant for an unknown one suggested, outcomes as JSON on stdout, and `--dry-run`
exits non-zero when an item would be refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .server_proc import CorralServer

pytestmark = pytest.mark.slow  # a real `corral up`: ~27 s


def _job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "queue": "default", "gpus": 1, "cpu": 0.1, "memory": 64,
            "command": [sys.executable, "-c", "pass"], **fields}


def _file(path: Path, *jobs: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump({"workloads": list(jobs)}))
    return str(path)


def _stored(server: CorralServer, prefix: str) -> list[str]:
    with server.client() as c:
        return [w.name for w in c.list(limit=1000).items if w.name.startswith(prefix)]


def test_one_bad_item_submits_nothing_and_is_named(server: CorralServer, tmp_path: Path) -> None:
    bad = _job("aon-c")
    bad["gpu"] = bad.pop("gpus")
    f = _file(tmp_path / "jobs.yaml", _job("aon-a"), _job("aon-b"), bad)
    r = server.cli("submit", f, check=False)
    assert r.returncode == 1
    assert "workloads[2].gpu (aon-c): unknown field" in r.stderr
    assert "did you mean 'gpus'?" in r.stderr
    assert "nothing submitted" in r.stderr
    assert _stored(server, "aon-") == []
    r = server.cli("submit", f, "--json", check=False)
    assert r.returncode == 1
    outcome = json.loads(r.stdout)
    assert [(i["index"], i["outcome"]) for i in outcome] == [
        (0, "checked"), (1, "checked"), (2, "refused")]
    assert outcome[2]["problems"][0]["field"] == "workloads[2].gpu"
    assert _stored(server, "aon-") == []


def test_a_good_file_is_submitted_whole(server: CorralServer, tmp_path: Path) -> None:
    f = _file(tmp_path / "jobs.yaml", _job("whole-a"), _job("whole-b", workers=2))
    outcome = server.cli_json("submit", f)
    assert isinstance(outcome, list)
    assert [(i["index"], i["name"], i["outcome"]) for i in outcome] == [
        (0, "whole-a", "submitted"), (1, "whole-b", "submitted")]
    assert outcome[1]["workloads"][0]["id"].startswith("whole-b")  # the ids, for scripts
    assert sorted(_stored(server, "whole-")) == ["whole-a", "whole-b"]


def test_an_unknown_queue_is_named_by_its_item(server: CorralServer, tmp_path: Path) -> None:
    f = _file(tmp_path / "jobs.yaml", _job("q-a"), _job("q-b", queue="nope"))
    r = server.cli("submit", f, check=False)
    assert r.returncode == 1
    assert "workloads[1]" in r.stderr and "nope" in r.stderr
    assert _stored(server, "q-") == []


def test_dry_run_exits_non_zero_when_an_item_would_be_refused(server: CorralServer,
                                                               tmp_path: Path) -> None:
    fits = _file(tmp_path / "fits.yaml", _job("dry-a"))
    r = server.cli("submit", fits, "--dry-run", check=False)
    assert r.returncode == 0, r.stderr
    assert "dry-a: would start now" in r.stdout
    coloured = subprocess.run([sys.executable, "-m", "corral.cli.main", "submit", fits,
                               "--dry-run"], env={**server.env(), "FORCE_COLOR": "1"},
                              capture_output=True, text=True, timeout=60)
    line = next(x for x in coloured.stdout.splitlines() if "would start now" in x)
    assert "\x1b" not in line and re.search(r"GPUs \[\d+\]$", line), line  # text, not markup
    never = _file(tmp_path / "never.yaml", _job("dry-a"), _job("dry-b", workers=64, gpus=8))
    r = server.cli("submit", never, "--dry-run", check=False)
    assert r.returncode == 1
    assert "workloads[1]" in r.stderr and "would be refused" in r.stderr
    assert _stored(server, "dry-") == []


def test_dry_run_takes_an_elastic_job_written_as_workers_min_max(server: CorralServer,
                                                                 tmp_path: Path) -> None:
    """Issue 13's spelling, `workers: {min: 2, max: 3}`, is the elastic job (corral.spec.elastic):
    the dry run says its bounds; a bad range is refused naming workers. Nothing is stored."""
    f = _file(tmp_path / "short.yaml", _job("dry-short", workers={"min": 2, "max": 3}))
    r = server.cli("submit", f, "--dry-run", check=False)
    assert r.returncode == 0, r.stderr
    assert "dry-short: would start now" in r.stdout and "elastic: 2 to 3 workers" in r.stdout
    bad = _file(tmp_path / "bad.yaml", _job("dry-short", workers={"min": 3, "max": 2}))
    r = server.cli("submit", bad, "--dry-run", check=False)
    assert r.returncode == 1 and "workloads[0].workers" in r.stderr, r.stderr
    assert _stored(server, "dry-short") == []
