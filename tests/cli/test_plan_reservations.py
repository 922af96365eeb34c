"""`corral plan` says which reservation a big job waits behind (issue 16).

The core's sentence names no holder (a stored one would be rewritten each time reservations are
made, pass on or end); the API adds the holders at read time. `corral plan` shows a plan before
anything is stored, so it adds them from the plan's own reservations, in the same words
(`core.reasons.waits_behind`, one definition for the API, the plan and the dry run).

The pool: two nodes of 4 GPUs, queue q; eight 1-GPU jobs run, filling both; gangs g1 and g2
(2 x 4 GPUs) wait, g1 the older, past reserve_after (300 s), holds the one reservation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from corral.cli.main import app

NOW = 1_000_000.0
POOL = {
    "providers": [{"name": "dc", "capacity_kind": "owned", "node_groups": [
        {"name": "n", "count": 2, "gpu_model": "H100", "gpus": 4, "gpu_memory": "80GiB",
         "cpu": 64, "memory": "512GiB"}]}],
    "queues": [{"name": "q", "quota_gpus": 8}],
}
WORK: list[dict[str, Any]] = [
    *({"name": f"s{i}", "queue": "q", "gpus": 1, "command": ["x"],
       "running": {"started_ago": 60, "placed_on": [{"node": f"dc-n-{i // 4}",
                                                     "devices": [i % 4]}]}} for i in range(8)),
    {"name": "g1", "queue": "q", "gpus": 4, "workers": 2, "command": ["x"],
     "submitted_ago": 900},
    {"name": "g2", "queue": "q", "gpus": 4, "workers": 2, "command": ["x"],
     "submitted_ago": 600},
]


def plan(tmp_path: Path, *extra: str, work: list[dict[str, Any]] = WORK) -> str:
    (tmp_path / "pool.yaml").write_text(yaml.safe_dump(POOL))
    (tmp_path / "work.yaml").write_text(yaml.safe_dump({"workloads": work}))
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "pool.yaml"),
                                      str(tmp_path / "work.yaml"), "--now", str(NOW), *extra],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_json_plan_names_the_holder_and_its_end(tmp_path: Path) -> None:
    p = json.loads(plan(tmp_path, "--json"))
    [held] = p["reservations"]
    assert held["workload"] == "g1" and held["nodes"] == ["dc-n-0", "dc-n-1"]
    until = held["until"]
    assert isinstance(until, float) and until > NOW
    g2 = p["pending"]["g2"]["message"]
    head, sep, now = g2.partition(" (now: ")
    assert sep and now == f"it waits behind nodes reserved for g1 until t={until:.0f})", g2
    assert "reserved for" not in head  # the core's own sentence names no holder
    # the holder is not told it waits behind its own reservation
    assert "(now: " not in p["pending"]["g1"]["message"]


def test_the_table_says_it_in_the_same_words(tmp_path: Path) -> None:
    until = json.loads(plan(tmp_path, "--json"))["reservations"][0]["until"]
    # a cell wraps over rows whose other cells are empty: its words, borders taken out
    words = " ".join(plan(tmp_path).replace("│", " ").split())
    assert words.count("(now: ") == 1, words  # g2's; g1, the holder, is not told of it
    assert f"(now: it waits behind nodes reserved for g1 until t={until:.0f})" in words, words
    assert f"reserved for g1 until t={until:.0f}: dc-n-0, dc-n-1" in words, words


def test_an_elastic_core_gang_behind_it_is_told_too(tmp_path: Path) -> None:
    """The elastic world's waiting core gang (2 x 4 GPUs) quotes the told sentence."""
    el = {"name": "el", "queue": "q", "gpus": 4, "command": ["x"], "submitted_ago": 100,
          "elastic": {"min_workers": 2, "max_workers": 3, "resize_interval": 600}}
    p = json.loads(plan(tmp_path, "--json", work=[*WORK, el]))
    until = p["reservations"][0]["until"]
    waits = p["elastic"]["el"]["core_gang_waits"]
    assert waits["message"] == p["pending"]["el"]["message"]
    assert waits["message"].endswith(
        f"(now: it waits behind nodes reserved for g1 until t={until:.0f})"), waits
