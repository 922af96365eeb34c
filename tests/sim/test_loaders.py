"""Trace loaders: what they read, the rules they apply, and their errors on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.model import CapacityKind
from corral.sim import alibaba, generic
from corral.sim.generic import write as generic_module_write
from corral.sim.load import load_trace
from corral.sim.trace import Trace, TraceFormatError, run_time

FIXTURES = Path(__file__).parent / "fixtures"


def test_openb_nodes_and_pods(openb: Trace) -> None:
    assert len(openb.nodes) == 24
    assert openb.gpu_capacity_milli == 105_000
    assert {n.gpu_model for n in openb.nodes} == {"A10", "G2", "G3", "P100", "T4", "V100M16", "V100M32"}
    assert len(openb.tasks) == 58
    assert openb.has_times


def test_openb_gpu_requests_follow_the_sharing_rule(openb: Trace) -> None:
    shares = [t for t in openb.tasks if t.shares_gpu]
    whole = [t for t in openb.tasks if t.gpus and not t.shares_gpu]
    assert shares and all(t.gpus == 1 and 0 < t.gpu_milli < 1000 for t in shares)
    assert whole and all(t.milli_per_worker == t.gpus * 1000 for t in whole)
    assert any(t.gpus >= 2 for t in whole)
    assert any(t.gpus == 0 and t.total_milli == 0 for t in openb.tasks)


def test_openb_gpu_spec_becomes_allowed_models(openb: Trace) -> None:
    constrained = [t for t in openb.tasks if t.gpu_models]
    assert constrained
    assert all("" not in t.gpu_models for t in constrained)
    assert any(len(t.gpu_models) > 1 for t in constrained)  # "V100M16|V100M32" style


def test_openb_never_scheduled_tasks_run_from_creation(openb: Trace) -> None:
    rows = {r["name"]: r for r in _csv(FIXTURES / "openb_pods_small.csv")}
    unscheduled = [t for t in openb.tasks if rows[t.name]["scheduled_time"] == ""]
    assert unscheduled
    for t in unscheduled:
        assert t.duration == max(float(rows[t.name]["deletion_time"]) - t.submitted, 1.0)
    assert any("without scheduled_time" in n for n in openb.notes)


def test_multigpu_style_file_has_no_times() -> None:
    trace = load_trace(FIXTURES / "openb_nodes_small.csv", FIXTURES / "openb_pods_multigpu_small.csv")
    assert len(trace.tasks) == 20
    assert not trace.has_times
    assert any("fill experiment only" in n for n in trace.notes)


@pytest.mark.parametrize(
    ("created", "scheduled", "deleted", "end", "expected"),
    [
        (10, 12, 100, 500, 88.0),
        (10, None, 100, 500, 90.0),
        (10, 12, None, 500, 488.0),
        (10, 10, 10, 500, 1.0),
    ],
    ids=["scheduled-to-deleted", "never-scheduled", "never-deleted", "at-least-one-second"],
)
def test_run_time_rule(created: float, scheduled: float | None, deleted: float | None, end: float,
                       expected: float) -> None:
    assert run_time(created, scheduled, deleted, end) == expected


def test_generic_format(generic: Trace) -> None:
    assert [n.capacity_kind for n in generic.nodes] == [
        CapacityKind.ON_DEMAND, CapacityKind.ON_DEMAND, CapacityKind.SPOT, CapacityKind.OWNED]
    by = {t.name: t for t in generic.tasks}
    assert by["train-2"].workers == 2 and by["train-2"].total_milli == 16_000
    assert by["share-1"].shares_gpu and by["share-1"].total_milli == 250
    assert by["small-2"].gpu_models == ("L40S", "H100")
    assert by["infer-1"].queue == "vision" and by["infer-1"].priority == 2
    assert generic.has_times


def test_generic_roundtrip(generic: Trace, tmp_path: Path) -> None:
    generic_nodes, generic_tasks = tmp_path / "n.csv", tmp_path / "t.csv"
    generic_module_write(generic, generic_nodes, generic_tasks)
    again = load_trace(generic_nodes, generic_tasks)
    assert again.nodes == generic.nodes
    assert again.tasks == generic.tasks


BAD_FILES = [
    ("missing-column", "sn,cpu_milli,memory_mib,gpu\nn1,1000,1000,2\n", "nodes",
     "lacks column(s) 'model'"),
    ("bad-integer", "sn,cpu_milli,memory_mib,gpu,model\nn1,lots,1000,2,T4\n", "nodes",
     "line 2: column 'cpu_milli' must be an integer"),
    ("negative-gpus", "sn,cpu_milli,memory_mib,gpu,model\nn1,1000,1000,-1,T4\n", "nodes",
     "column 'gpu' must be an integer from 0 to 64"),
    ("duplicate-node", "sn,cpu_milli,memory_mib,gpu,model\nn1,1,1,1,T4\nn1,1,1,1,T4\n", "nodes",
     "line 3: column 'sn' repeats 'n1'"),
    ("share-out-of-range", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1,1,1,1500\n", "pods",
     "column 'gpu_milli' must be an integer from 0 to 1000, got '1500'"),
    ("share-zero", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1,1,1,0\n", "pods",
     "column 'gpu_milli' must be 1 to 1000 for a pod with num_gpu 1"),
    ("bad-time", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time,deletion_time,"
     "scheduled_time\np1,1,1,0,0,soon,5,\n", "pods", "column 'creation_time' must be a number"),
    ("unknown-format", "host,cards\nx,2\n", "nodes", "not a node list"),
    ("empty-file", "", "nodes", "the file is empty"),
    ("generic-bad-kind", "id,gpus,cpu_milli,memory_mib,capacity_kind\nn,1,1,1,reserved\n", "nodes",
     "column 'capacity_kind' must be one of"),
    ("generic-shared-multi-gpu", "id,submit_time,gpus,gpu_milli,cpu_milli,memory_mib\n"
     "t,0,2,500,1,1\n", "pods", "1000 (or empty) when gpus > 1"),
]


@pytest.mark.parametrize(("content", "which", "message"), [c[1:] for c in BAD_FILES],
                         ids=[c[0] for c in BAD_FILES])
def test_bad_files_name_the_column(content: str, which: str, message: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    nodes = bad if which == "nodes" else FIXTURES / "openb_nodes_small.csv"
    pods = bad if which == "pods" else FIXTURES / "openb_pods_small.csv"
    with pytest.raises(TraceFormatError, match=r"bad\.csv") as err:
        load_trace(nodes, pods)
    assert message in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="no such file"):
        load_trace(tmp_path / "nope.csv", FIXTURES / "openb_pods_small.csv")


def test_parquet_without_pyarrow_says_what_to_do(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pq = tmp_path / "tasks.parquet"
        pq.write_bytes(b"PAR1")
        with pytest.raises(TraceFormatError, match="pyarrow"):
            load_trace(FIXTURES / "openb_nodes_small.csv", pq)
    else:
        pytest.skip("pyarrow is installed here: the reader is exercised instead of the message")


def test_loaders_are_reexported() -> None:
    assert alibaba.load_nodes(FIXTURES / "openb_nodes_small.csv")[0].provider == alibaba.PROVIDER
    assert generic.load_tasks(FIXTURES / "generic_tasks.csv")[0].name == "train-1"


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))
