"""`corral providers` against a real `corral up` (SQLite and PostgreSQL): the JSON agrees with
`corral nodes` and with a running fractional job, and the table names every provider."""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import pytest

from .server_proc import CorralServer

pytestmark = pytest.mark.slow  # 2 tests, 24 s (-n 2 whole run, 2026-12-05, load 8-32)


def test_providers_json_and_table_agree_with_nodes(server: CorralServer) -> None:
    with server.client() as c:
        wid = c.submit({"name": "frac", "queue": "default", "gpus": 0.5, "cpu": 0.1,
                        "memory": 64, "command": [sys.executable, "-c",
                                                  "import time; time.sleep(120)"]}).group_id
        try:
            c.wait(wid, states={"running"}, timeout_s=60)
            providers: Any = server.cli_json("providers")
            nodes: Any = server.cli_json("nodes")
            table = server.cli("providers").stdout
        finally:
            c.cancel(wid)
    want: dict[str, dict[str, Any]] = defaultdict(lambda: {"nodes": 0, "gpus": 0, "used": 0.0})
    for n in nodes:
        w = want[n["provider"]]
        w["nodes"] += 1
        w["gpus"] += n["gpu_count"]
        w["used"] += n["gpus_used"]
    assert sorted(p["name"] for p in providers) == sorted(want)
    for p in providers:
        w = want[p["name"]]
        assert (p["nodes"], p["gpus_total"]) == (w["nodes"], w["gpus"]), p
        assert p["gpus_allocated"] == pytest.approx(w["used"]), p
        assert p["gpus_total"] == pytest.approx(
            p["gpus_allocated"] + p["gpus_idle"] + p["gpus_unavailable"]), p
    assert sum(p["gpus_allocated"] for p in providers) == pytest.approx(0.5)
    assert "providers" in table and "ALLOCATED" in table
    assert all(p["name"] in table for p in providers)
