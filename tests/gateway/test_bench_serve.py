"""bench/serve.py's replay plan and its summary, on a tiny trace: the slice of the trace it
replays, the time compression, the hold drawn from each request's generated tokens, and how it
counts a failed request (a stream cut after its first byte is a failure, not a success). The
live run itself (corral up, replicas, minutes) is the bench's job, not a test's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_serve"] = module
    spec.loader.exec_module(module)
    return module


def test_the_replay_takes_its_slice_compressed_with_each_requests_length(tmp_path: Path) -> None:
    b = bench()
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:00.0000000,10,16\n"
                     "2023-11-16 18:15:10.0000000,10,17\n"
                     "2023-11-16 18:15:30.5000000,10,160\n"
                     "2023-11-16 18:16:00.0000000,10,1\n")
    rows = b.load_trace(trace)
    assert [t for t, _ in rows] == [0.0, 10.0, 30.5, 60.0]
    plan = b.arrivals(rows, offset=10.0, window=50.0, speed=2.0)  # [10, 60): two requests
    assert plan == [(0.0, 2), (10.25, 10)]  # at (t - 10) / 2; ceil(tokens / 16) tokens


def test_a_cut_stream_is_a_failure_and_errors_are_grouped_by_kind() -> None:
    b = bench()
    results = [b.Result(0.0, ttfb=0.1, total=1.0), b.Result(0.0, ttfb=0.2, total=2.0),
               b.Result(0.0, ttfb=0.1, error="stream cut (RemoteProtocolError)"),
               b.Result(0.0, error="HTTP 502 b'{\"error\": \"bad_gateway\"}'"),
               b.Result(0.0, error="HTTP 502 b'{\"error\": \"other\"}'")]
    s = b.summary(results)
    assert (s["requests"], s["failed"]) == (5, 3)
    assert s["errors"] == {"stream cut (RemoteProtocolError)": 1, "HTTP 502": 2}
    assert len(s["error_examples"]) == 2 and s["ttfb_p50_s"] in (0.1, 0.2)
