"""The Grafana board in deploy/grafana is built on metrics that /metrics really exposes, and its
credits panels cover every credits metric and plot the ledger's own figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from corral.control.device_use import UseCutoffs, UseSample, board_for

from .rig import Dash, value

BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "corral.json"


def _exprs(board: dict) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def _metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"corral_\w+", e)}


def test_the_board_is_well_formed() -> None:
    board = json.loads(BOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all({"h", "w", "x", "y"} <= p["gridPos"].keys() for p in board["panels"])
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])
    variables = {v["name"] for v in board["templating"]["list"]}
    for expr in _exprs(board):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval"}, expr


def test_every_metric_on_the_board_is_exposed(sqlite_dash: Dash) -> None:
    sqlite_dash.submit(sqlite_dash.ann)
    sqlite_dash.step()
    # a measured sample, so the GPU use gauges have series, not only their family's name
    board_for(sqlite_dash.store).record("aws-0", [UseSample(0, 0.05, 2**30, 80 * 2**30,
                                                            sqlite_dash.clock.now())])
    text = sqlite_dash.client.get("/metrics", headers=sqlite_dash.admin).text
    exposed, sampled = set(), set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name)
        exposed.update(s.name for s in family.samples)
        sampled.update(s.name for s in family.samples)
    # counters without samples yet are exposed by family name; their series end in _total
    exposed.update(f"{name}_total" for name in list(exposed))
    used = _metrics(_exprs(json.loads(BOARD.read_text())))
    assert used and used <= exposed, sorted(used - exposed)
    gpu_use = {m for m in used if m.startswith("corral_gpu_")}
    assert gpu_use == {"corral_gpu_utilization_ratio", "corral_gpu_memory_used_bytes",
                       "corral_gpu_memory_total_bytes", "corral_gpu_idle_below_ratio"}
    assert gpu_use <= sampled, sorted(gpu_use - sampled)


def test_the_gpu_use_panels_show_the_measured_use_and_the_servers_cut_off(
        sqlite_dash: Dash) -> None:
    """The 'Measured GPU use' row: per-device utilisation and memory, and a count of held,
    barely used GPUs by the server's own cut-off (exported beside the gauges)."""
    board = json.loads(BOARD.read_text())
    titles = {p["title"]: p for p in board["panels"]}
    assert titles["Measured GPU use"]["type"] == "row"
    [idle] = [t["expr"] for t in titles["Held, barely used GPUs"]["targets"]]
    assert 'workload!=""' in idle and "corral_gpu_idle_below_ratio" in idle
    per_device = titles["GPU utilisation per device (measured)"]
    assert per_device["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert "corral_gpu_memory_used_bytes" in str(titles["GPU memory in use per device "
                                                         "(measured)"]["targets"])
    m = sqlite_dash.scrape()
    assert value(m, "corral_gpu_idle_below_ratio") == 0.1
    board_for(sqlite_dash.store).cutoffs = UseCutoffs(idle_below=0.25)
    assert value(sqlite_dash.scrape(), "corral_gpu_idle_below_ratio") == 0.25


def test_the_credit_panels_cover_every_credit_metric_and_show_the_ledger(
        sqlite_dash: Dash) -> None:
    dash = sqlite_dash
    grant = dash.client.post("/v1/ledger/grants", headers=dash.admin,
                             json={"queue": "team-a", "amount": "100", "key": "g-1"})
    assert grant.status_code == 201, grant.text
    wid = dash.submit(dash.ann, gpu_models=["H100"], max_runtime="1h")
    dash.step(2)
    held = dash.scrape()
    dash.clock.advance(1800)  # half an hour: about 2.05 to pay
    dash.backend.finish(wid)
    dash.step()
    done = dash.scrape()
    board = json.loads(BOARD.read_text())
    credit_panels = [p for p in board["panels"]
                     if any("corral_credits_" in t["expr"] for t in p.get("targets", []))]
    on_board = _metrics([t["expr"] for p in credit_panels for t in p["targets"]])
    exposed = {name for name in done if name.startswith("corral_credits_")}
    assert on_board == exposed, (sorted(on_board), sorted(exposed))
    assert all('queue=~"$queue"' in t["expr"] for p in credit_panels for t in p["targets"])
    titles = {p["title"] for p in credit_panels}
    assert {"Credits held", "Credits spent", "Credits available"} <= titles
    # the panels plot what the ledger says: 4.10 held while it runs (1 H100-hour), then spent
    bal = dash.client.get("/v1/ledger/queues/team-a/balance", headers=dash.admin).json()
    assert value(held, "corral_credits_held", queue="team-a") == 4.10
    assert value(done, "corral_credits_held", queue="team-a") == 0
    assert value(done, "corral_credits_spent_total", queue="team-a") == float(bal["settled"]) > 0
    assert value(done, "corral_credits_available", queue="team-a") == float(bal["available"])
    assert value(done, "corral_credits_granted_total", queue="team-a") == 100
