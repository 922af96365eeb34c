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

pytestmark = pytest.mark.slow  # a real `corral up` and CLI processes: ~35 s

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


def _columns(plain: str, row_id: str) -> dict[str, str]:
    """The cells of one row of a plain (-o plain|wide) listing, by the header above them."""
    header, *rows = plain.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    line = next(r for r in rows if r.startswith(row_id + " "))
    bounds = zip(starts, [*starts[1:], None], strict=True)
    return {header[a:b].strip(): line[a:b].strip() for a, b in bounds}


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
    row = _columns(wide, busy["waiting"][0])  # each value under its own header
    assert (row["NAME"], row["KIND"], row["QUEUE"]) == (f"{LONG}-0", "job", "default"), row
    assert (row["STATE"], row["WORKERS"], row["GPUS"]) == ("pending", "2", "4"), row
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


def test_logs_says_why_there_is_no_output(server: CorralServer,
                                          busy: dict[str, list[str]]) -> None:
    """Issue 14: an empty screen never leaves a person guessing: a worker or an attempt the
    workload does not have is an error naming those it has; a pending job is said to be
    waiting, with its reason; stdout stays the output (none) for scripts."""
    done, waiting = busy["done"][0], busy["waiting"][0]
    r = _cli(server, 80, "logs", done, "--worker", "3")
    assert r.returncode == 2 and r.stdout == ""
    assert f"{done} has 1 worker (0): no worker 3 (--worker)" in r.stderr
    r = _cli(server, 80, "logs", done, "--attempt", "2")
    assert r.returncode == 2 and "has 1 attempt (0) so far: no attempt 2" in r.stderr
    r = _cli(server, 160, "logs", waiting, "--worker", "1")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert f"no output: {waiting} is pending, not launched yet (InsufficientCapacity" in r.stderr
    assert "no worker" not in _cli(server, 80, "logs", done).stderr  # it printed: no note


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
        # no backoff before the retry: the default 10 s is waited in nothing this test checks
        wid = c.submit({**_spec("twice", code), "gpus": 0, "workers": 1, "max_restarts": 1,
                        "restart_on": [{"exit_code": [3]}], "restart_backoff": 0}
                       ).workloads[0].id
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
    submit_help = " ".join(_cli(server, 200, "submit", "--help").stdout.split())
    assert "(named as workloads[i].field) submits none" in submit_help  # [i] is not markup


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


def test_an_array_is_one_object_for_describe_logs_and_cancel(server: CorralServer) -> None:
    """Issue 14: the group id `corral submit` prints for an array names it whole, as a
    service's id does: describe counts and lists its tasks, cancel stops every live one, logs
    says which task ids to choose from."""
    with server.client() as c:
        sub = c.submit({**_spec("sweep"), "gpus": 0, "workers": 1, "array": {"range": "0-2"}})
        try:
            group = sub.group_id
            r = _cli(server, 80, "describe", group)
            assert r.returncode == 0, r.stderr
            assert f"{group}  array of 3 tasks" in r.stdout
            assert all(sum(w.id in line for line in r.stdout.splitlines()) == 1
                       for w in sub.workloads), r.stdout
            r = _cli(server, 80, "logs", group)
            assert r.returncode == 1 and "is an array of 3 tasks: name one" in r.stderr
            r = _cli(server, 80, "cancel", group, "--json")
            assert r.returncode == 0, r.stderr
            assert sorted(w["id"] for w in json.loads(r.stdout)) == \
                sorted(w.id for w in sub.workloads)
            assert {c.wait(w.id, timeout_s=60).state for w in sub.workloads} == {"cancelled"}
        finally:
            c.cancel_group(sub.group_id)

