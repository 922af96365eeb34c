"""`corral simulate` (corral.cli.simulate): fill, replay and compare on the shipped fixtures;
bad input gives a message naming the problem and exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli.simulate import app

FIXTURES = Path(__file__).parent / "fixtures"
NODES = str(FIXTURES / "openb_nodes_small.csv")
PODS = str(FIXTURES / "openb_pods_small.csv")
runner = CliRunner()


def test_fill_writes_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "fill.json", tmp_path / "fill.png"
    result = runner.invoke(app, ["fill", "--nodes", NODES, "--pods", PODS, "--policy", "bestfit",
                                 "--seed", "3", "--json", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["policy"] == "bestfit" and data["seed"] == 3
    assert 0 < data["final_allocation_pct"] <= 100
    assert data["curve"][0] == {"arrived_pct": 1, "allocation_pct": data["curve"][0]["allocation_pct"]}
    assert data["wall_seconds"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_writes_figures(tmp_path: Path) -> None:
    out, png = tmp_path / "replay.json", tmp_path / "replay.png"
    result = runner.invoke(app, ["replay", "--nodes", NODES, "--pods", PODS, "--policy", "fifo",
                                 "--pool-fraction", "0.5", "--load", "0.5", "--price", "G2=2.5", "--json", str(out),
                                 "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("jct_s", "wait_s", "makespan_s", "gpu_allocation_pct", "queue_shares",
                "jain_index", "preemptions", "cost", "goodput_pct", "wall_seconds", "series"):
        assert key in data
    assert set(data["jct_s"]) == {"avg", "median", "p95", "p99", "count"}
    assert png.exists()


def test_compare_prints_one_table(tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    result = runner.invoke(app, ["compare", "--nodes", NODES, "--pods", PODS, "--policies",
                                 "random,corral", "--seeds", "1-2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "random" in result.stdout and "corral" in result.stdout and "±" in result.stdout
    assert len(json.loads(out.read_text())["runs"]) == 4


def test_synthetic_replay_needs_no_files() -> None:
    result = runner.invoke(app, ["replay", "--synthetic", "200", "--synthetic-nodes", "6",
                                 "--policy", "sjf"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fill", "--pods", PODS], "give --nodes and --pods"),
        (["fill", "--nodes", NODES, "--pods", PODS, "--policy", "magic"], "unknown placement policy 'magic'"),
        (["replay", "--nodes", NODES, "--pods", PODS, "--policy", "lottery"], "unknown replay policy"),
        (["replay", "--nodes", NODES, "--pods", str(FIXTURES / "openb_pods_multigpu_small.csv")],
         "replay needs them"),
        (["replay", "--nodes", NODES, "--pods", PODS, "--price", "G2"], "--price wants MODEL=PRICE"),
        (["compare", "--nodes", NODES, "--pods", PODS, "--seeds", "x"], "--seeds wants numbers"),
        (["fill", "--nodes", PODS, "--pods", PODS], "not a node list"),
    ],
    ids=["no-nodes", "unknown-fill-policy", "unknown-replay-policy", "no-times", "bad-price",
         "bad-seeds", "pods-as-nodes"],
)
def test_user_errors_are_messages(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_compare_replay_with_an_alias(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", "--experiment", "replay", "--synthetic", "150",
                                 "--synthetic-nodes", "4", "--policies", "fifo,backfill",
                                 "--seeds", "1"])
    assert result.exit_code == 0, result.output
    assert "backfill" in result.stdout and "nan" not in result.stdout
