"""The Grafana board in deploy/grafana is built on metrics that /metrics really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .rig import Dash

BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "corral.json"


def _exprs(board: dict) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


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
    text = sqlite_dash.client.get("/metrics", headers=sqlite_dash.admin).text
    exposed = set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name)
        exposed.update(s.name for s in family.samples)
    # counters without samples yet are exposed by family name; their series end in _total
    exposed.update(f"{name}_total" for name in list(exposed))
    used = {m for e in _exprs(json.loads(BOARD.read_text())) for m in re.findall(r"corral_\w+", e)}
    assert used and used <= exposed, sorted(used - exposed)
