"""bench/serve_proxy.py at a tiny size: it starts its replicas and gateway as processes, prints
every figure for every mode and level, drops nothing, and stops what it started. Behaviour
only: no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve_proxy.py"


@pytest.mark.slow
def test_serve_proxy_prints_overhead_per_mode_and_level(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--concurrency", "1,3", "--requests", "12",
                          "--slice", "4", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    for mode in ("json (whole response)", "sse (first token)"):
        for level in (1, 3):
            line = next(x for x in out.stdout.splitlines()
                        if x.startswith(f"{mode} concurrency {level}:"))
            for figure in ("direct p50", "gateway p50", "overhead p50", "p99", "errors 0+0",
                           "requests 12+12", "CPU ms/request: gateway", "load"):
                assert figure in line, (figure, line)
    result = json.loads((tmp_path / "r.json").read_text())
    assert [(r["mode"], r["concurrency"]) for r in result["rows"]] == \
        [("json", 1), ("json", 3), ("sse", 1), ("sse", 3)]
    assert json.loads(out.stdout.splitlines()[-1]) == result


def test_serve_proxy_refuses_bad_levels() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--concurrency", "0"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "--concurrency" in out.stderr
