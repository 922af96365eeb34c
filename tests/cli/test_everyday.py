"""Everyday commands against a real server, as a script or a person at 80 or 160 columns sees
them: IDs whole, -o formats, ended work said to be hidden, cancel by IDs and selectors,
logs --tail, --version, and the environment variables in help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from .server_proc import CorralServer

PY = sys.executable
LONG = "a-rather-long-workload-name-for-narrow-terminals"


# The blocker must outlive the module however slow the machine: at 120 s it ended under load
# in CI's company, a waiting gang started, and the cancel-by-selector test saw one pending too few.
def _spec(name: str, code: str = "import time; time.sleep(3600)", **fields: Any) -> dict[str, Any]:
    return {"name": name, "queue": "default", "gpus": 4, "workers": 2, "cpu": 0.1,
            "memory": 64, "command": [PY, "-c", code], **fields}


def _cli(server: CorralServer, columns: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env(), "COLUMNS": str(columns)}
    return subprocess.run([PY, "-m", "corral.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=server.data_dir)


@pytest.fixture(scope="module")
def busy(server: CorralServer) -> dict[str, list[str]]:
    """One gang holding every GPU, three long-named workloads waiting behind it, and one
    finished job with four lines of output."""
    with server.client() as c:
        done = c.submit({**_spec("printer", "print('one\\ntwo\\nthree\\nfour')"), "gpus": 0,
                         "workers": 1}).workloads[0].id
        c.wait(done, timeout_s=60)
        blocker = c.submit(_spec("blocker")).workloads[0].id
        c.wait(blocker, states={"running"}, timeout_s=60)
        waiting = [c.submit(_spec(f"{LONG}-{i}")).workloads[0].id for i in range(3)]
        for wid in waiting:
            c.wait(wid, states={"pending"}, timeout_s=10)
    return {"done": [done], "blocker": [blocker], "waiting": waiting}


@pytest.mark.parametrize("columns", [80, 160])
def test_ids_are_never_wrapped_or_cut(server: CorralServer, busy: dict[str, list[str]],
                                      columns: int) -> None:
    """At 160 columns the table fits; at 80 these 57-character IDs do not fit a table with
    them whole, and the plain layout is printed (rich would have cropped the table)."""
    r = _cli(server, columns, "ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for wid in busy["waiting"] + busy["blocker"]:
        assert sum(wid in line for line in lines) == 1, r.stdout
    assert any("SUBMITTED" in line and "REASON" in line for line in lines)  # headers whole
    if columns == 160:
        assert max(len(line) for line in lines) <= columns
        assert "┃ ID" in r.stdout


def test_short_ids_fit_a_table_at_80_columns(server: CorralServer,
                                             busy: dict[str, list[str]]) -> None:
    r = _cli(server, 80, "ls", "--state", "running")
    lines = r.stdout.splitlines()
    assert "┃ ID" in r.stdout and max(len(line) for line in lines) <= 80
    assert sum(busy["blocker"][0] in line for line in lines) == 1


def test_output_formats(server: CorralServer, busy: dict[str, list[str]]) -> None:
    live = set(busy["waiting"] + busy["blocker"])
    ids = _cli(server, 80, "ls", "-o", "ids").stdout.split()
    assert set(ids) == live
    rows = _cli(server, 80, "ls", "-o", "plain").stdout.splitlines()
    assert rows[0].split()[:2] == ["ID", "QUEUE"]
    assert {row.split()[0] for row in rows[1:]} == live
    assert {w["id"] for w in json.loads(_cli(server, 80, "ls", "-o", "json").stdout)} == live
    wide = _cli(server, 200, "ls", "-o", "wide").stdout
    assert "NAME" in wide and "GPUS" in wide and "InsufficientCapacity" in wide
    queues = _cli(server, 80, "queues", "-o", "ids").stdout.split()
    assert "default" in queues
    assert _cli(server, 80, "nodes", "-o", "ids").stdout.split() == ["local-0", "local-1"]


def test_ls_says_ended_work_is_hidden(server: CorralServer, busy: dict[str, list[str]]) -> None:
    r = _cli(server, 80, "ls")
    assert "ended workloads are hidden" in r.stderr
    assert busy["done"][0] not in r.stdout
    assert busy["done"][0] in _cli(server, 160, "ls", "--all").stdout


def test_logs_tail(server: CorralServer, busy: dict[str, list[str]]) -> None:
    r = _cli(server, 80, "logs", busy["done"][0], "--tail", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "three\nfour\n"


def test_logs_with_timestamps_and_since(server: CorralServer,
                                        busy: dict[str, list[str]]) -> None:
    """Issue 14: each line begins with when it was written (RFC 3339, UTC), as kubectl's;
    --since leaves out older lines (the local backend's runners keep the times)."""
    r = _cli(server, 80, "logs", busy["done"][0], "--timestamps")
    assert r.returncode == 0, r.stderr
    stamped = r.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three", "four"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.split(" ")[0])
               for line in stamped), r.stdout
    assert _cli(server, 80, "logs", busy["done"][0], "--since", "1h").stdout == \
        "one\ntwo\nthree\nfour\n"
    assert _cli(server, 80, "logs", busy["done"][0], "--since", "2999-01-01").stdout == ""
    bad = _cli(server, 80, "logs", busy["done"][0], "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_logs_of_an_earlier_attempt(server: CorralServer) -> None:
    """A job that failed once (exit 3, retried by its restart_on) printed different lines on
    each launch: --attempt 0 shows the first launch's, the default the current one's."""
    code = ("import os, sys; a = os.environ['CORRAL_ATTEMPT']; print('attempt', a); "
            "sys.exit(3 if a == '0' else 0)")
    with server.client() as c:
        wid = c.submit({**_spec("twice", code), "gpus": 0, "workers": 1, "max_restarts": 1,
                        "restart_on": [{"exit_code": [3]}]}).workloads[0].id
        assert c.wait(wid, timeout_s=60).state == "succeeded"
    first = _cli(server, 80, "logs", wid, "--attempt", "0")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "attempt 0\n"
    assert _cli(server, 80, "logs", wid).stdout == "attempt 1\n"
    refused = _cli(server, 80, "logs", wid, "--attempt", "0", "--follow")
    assert refused.returncode == 2 and "--follow reads the current attempt" in refused.stderr
    described = _cli(server, 160, "describe", wid)
    assert described.returncode == 0, described.stderr
    assert "1 worker x 0 GPUs, cpu 100m, memory 64MiB" in described.stdout
    assert "priority   0" in described.stdout and "CORRAL_ATTEMPT" in described.stdout
    attempts = json.loads(_cli(server, 160, "describe", wid, "--json").stdout)["attempts"]
    assert [a["attempt"] for a in attempts] == [0, 1]
    assert attempts[0]["outcome"] == "Restarting" and "exit code 3" in attempts[0]["message"]
    assert attempts[1]["outcome"] == "Completed" and attempts[1]["ended"] is not None


def test_version_and_environment_in_help(server: CorralServer) -> None:
    r = _cli(server, 120, "--version")
    assert r.returncode == 0 and r.stdout.startswith("corral ")
    helptext = _cli(server, 120, "ls", "--help").stdout
    assert "CORRAL_URL" in helptext and "CORRAL_TOKEN" in helptext


def test_cancel_by_ids_and_by_selector(server: CorralServer, busy: dict[str, list[str]]) -> None:
    first, *rest = busy["waiting"]
    r = _cli(server, 80, "cancel", first, "no-such-workload")
    assert r.returncode == 1  # one unknown ID: said, and the other cancelled all the same
    assert "no-such-workload: not cancelled" in r.stderr
    r = _cli(server, 80, "cancel", "-q", "default", "--state", "pending", "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(w["id"] for w in json.loads(r.stdout)) == sorted(rest)
    with server.client() as c:
        assert {c.get(w).state for w in busy["waiting"]} == {"cancelled"}
        assert c.get(busy["blocker"][0]).state == "running"  # not pending: not selected
        c.cancel(busy["blocker"][0])
    assert _cli(server, 80, "cancel").returncode == 2  # nothing named: nothing cancelled
