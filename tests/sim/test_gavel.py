"""Gavel's traces and throughputs, and their replay through the core (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.sim.gavel import (
    GavelFormatError,
    GavelJob,
    Throughputs,
    at_speedup,
    cluster_nodes,
    gavel_line,
    load_trace,
    read_gavel_log,
    runnable,
    write_throughputs,
)
from corral.sim.gavel_replay import POLICIES, migration_gain, replay

RATES = {  # steps/s alone: "A" gains 10x on a V100 over a K80, "B" 1.5x
    "v100": {"('A', 1)": {"null": 10.0}, "('B', 1)": {"null": 3.0}, "('A', 2)": {"null": 18.0},
             "('B', 2)": {"null": 5.0}},
    "p100": {"('A', 1)": {"null": 4.0}, "('B', 1)": {"null": 2.5}, "('A', 2)": {"null": 7.0},
             "('B', 2)": {"null": 4.5}},
    "k80": {"('A', 1)": {"null": 1.0}, "('B', 1)": {"null": 2.0}, "('A', 2)": {"null": 1.8},
            "('B', 2)": {"null": 3.6}},
}
CLUSTER = {"v100": 2, "p100": 2, "k80": 2}


@pytest.fixture
def rates_file(tmp_path: Path) -> Path:
    p = tmp_path / "throughputs.json"
    p.write_text(json.dumps(RATES))
    return p


def job(name: str, kind: str, steps: int, at: float, scale: int = 1) -> GavelJob:
    return GavelJob(name, kind, "cd /w && python3 train.py", "-n", False, steps, at, scale)


def workload(n: int = 24) -> list[GavelJob]:
    return [job(f"j{i:03d}", "AB"[i % 2], 36_000 if i % 2 == 0 else 7_200, 600.0 * i,
                scale=1 + (i % 5 == 0)) for i in range(n)]


def test_unmeasured_count_scales_the_largest_measured_below(rates_file: Path) -> None:
    t = Throughputs.load(rates_file)
    assert t.of("A", 2, "v100") == 18.0  # measured
    assert t.of("A", 4, "v100") == pytest.approx(18.0 * 4 / 2)
    assert t.of("B", 3, "k80") == pytest.approx(3.6 * 3 / 2)
    with pytest.raises(GavelFormatError, match="no measured throughput of 'C'"):
        t.of("C", 1, "k80")


def test_trace_lines_and_the_converted_format(tmp_path: Path) -> None:
    p = tmp_path / "t.trace"
    p.write_text("A\tcd /w && python3 train.py\t-n\t1\t500\t30.000000\t2\n"
                 "B\tpython3 x.py\t-n\t0\t100\t0.000000\t1\n")
    jobs = load_trace(p)
    assert [(j.name, j.job_type, j.arrival, j.scale) for j in jobs] == [
        ("j00001", "B", 0.0, 1), ("j00000", "A", 30.0, 2)]
    assert gavel_line(jobs[1]).split("\t") == [
        "A", "python3 train.py", "/w", "-n", "1", "500", "2", "1", "-1", "30.000000"]
    p.write_text("A\tcmd\t-n\t1\t500\n")
    with pytest.raises(GavelFormatError, match=r"t\.trace:1: expected 7 tab-separated"):
        load_trace(p)


def test_load_factor_and_too_large_jobs() -> None:
    jobs = [job("a", "A", 1, 100.0), job("b", "A", 1, 900.0, scale=3)]
    assert [j.arrival for j in at_speedup(jobs, 4)] == [100.0, 300.0]
    kept, dropped = runnable(jobs, CLUSTER)
    assert [j.name for j in kept] == ["a"] and dropped == 1


def test_converted_throughputs_carry_the_derived_counts(rates_file: Path, tmp_path: Path
                                                        ) -> None:
    out = tmp_path / "conv.json"
    write_throughputs(rates_file, [job("a", "A", 1, 0.0, scale=4)], out)
    conv = json.loads(out.read_text())
    assert conv["k80"]["('A', 4)"] == {"null": pytest.approx(3.6)}
    assert conv["v100_unconsolidated"]["('A', 4)"] == {"null": pytest.approx(36.0)}


def test_gang_stays_on_one_type_and_types_interleave() -> None:
    nodes = cluster_nodes(CLUSTER)
    assert [n.gpu_model for n in nodes] == ["p100", "k80", "v100"] * 2
    assert len({n.region for n in nodes}) == 3


def test_migration_rule() -> None:
    assert migration_gain(36_000, 1.0, 3.0, 60.0) == pytest.approx(24_000 - 60)
    assert migration_gain(100, 1.0, 3.0, 60.0) == 0.0  # saves 67 s: under two restarts
    assert migration_gain(36_000, 3.0, 1.0, 60.0) == 0.0  # slower there


def test_every_job_completes_on_every_policy_and_aware_is_faster(rates_file: Path) -> None:
    t = Throughputs.load(rates_file)
    jobs = workload()
    reports = {p: replay(jobs, t, p) for p in POLICIES}
    for r in reports.values():
        assert r["completed"] == len(jobs)
        assert r["avg_jct_h"] >= r["bound_avg_jct_h"]
    assert reports["aware"]["avg_jct_h"] < reports["corral"]["avg_jct_h"]
    assert reports["fifo-aware"]["avg_jct_h"] < reports["fifo"]["avg_jct_h"]


def test_same_seed_same_report(rates_file: Path) -> None:
    t = Throughputs.load(rates_file)
    jobs = at_speedup(workload(), 4)
    first, second = replay(jobs, t, "aware", seed=3), replay(jobs, t, "aware", seed=3)
    first.pop("wall_seconds"), second.pop("wall_seconds")
    assert first == second


def test_unknown_policy_is_refused(rates_file: Path) -> None:
    with pytest.raises(ValueError, match="unknown policy 'gavel'; use one of fifo, corral"):
        replay([], Throughputs.load(rates_file), "gavel")


def test_reads_gavels_per_job_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("noise\nJob completion times:\nJob 0: 10.5\nJob 1: 20.0\n"
                   "Average job completion time: 15.25 seconds (0.00 hours)\n")
    assert read_gavel_log(log) == [10.5, 20.0]
    log.write_text("Job 0: 10.5\n")  # killed before its summary
    assert read_gavel_log(log) is None
    assert read_gavel_log(tmp_path / "missing.log") is None
