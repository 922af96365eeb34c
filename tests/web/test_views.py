"""The dashboard's pure views: the GPU grid, the queue board, usage samples, report files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.model import Health, Node, Queue
from corral.store.workloads import Held, WorkloadRecord
from corral.web.grid import gpu_totals, node_rows
from corral.web.history import UsageHistory, take_sample, visible_point
from corral.web.queue_board import queue_board, tree_order
from corral.web.reports import find_report, list_reports


def node(id: str, gpus: int = 4, provider: str = "p", **kw: object) -> Node:
    return Node(id, provider, "H100", gpus, 81920, 64_000, 262_144, **kw)  # type: ignore[arg-type]


def held(wid: str, queue: str, node_id: str, devices: tuple[int, ...], milli: int = 1000) -> Held:
    return Held(wid, queue, node_id, devices, milli)


def record(wid: str, queue: str, state: str, reason: str = "") -> WorkloadRecord:
    return WorkloadRecord(seq=0, id=wid, group_id=wid, name=wid, queue=queue, user="u", kind="job",
                          spec={}, state=state, reason_code=reason, reason_message="", attempt=0,
                          restart_count=0, version=1, submitted_at=0.0, started_at=None,
                          finished_at=None, not_before=0.0, stop_reason=None, stop_message="",
                          exit_code=None)


def everyone(_: str) -> bool:
    return True


# --- grid -------------------------------------------------------------------------------------

def test_fractional_shares_fill_their_cell_and_idle_cells_are_empty() -> None:
    rows = node_rows([node("n0", 2)], [held("a", "qa", "n0", (0,), 250),
                                       held("b", "qb", "n0", (0,), 500)], everyone)
    cells = rows[0].devices
    assert [(s.queue, s.gpus, s.workload_id) for s in cells[0].shares] == [
        ("qa", 0.25, "a"), ("qb", 0.5, "b")]
    assert cells[1].shares == []
    assert rows[0].gpus_used == 0.75


def test_a_user_sees_other_queues_as_one_anonymous_share_per_gpu() -> None:
    rows = node_rows([node("n0", 1)], [held("mine", "qa", "n0", (0,), 250),
                                       held("x", "qb", "n0", (0,), 250),
                                       held("y", "qc", "n0", (0,), 500)], lambda q: q == "qa")
    shares = rows[0].devices[0].shares
    assert [(s.queue, s.gpus, s.workload_id) for s in shares] == [
        ("qa", 0.25, "mine"), (None, 0.75, None)]


@pytest.mark.parametrize(("flags", "expected"), [
    ({}, (8.0, 5.0, 3.0, 0.0)),
    ({"cordoned": True}, (8.0, 5.0, 2.0, 1.0)),
    ({"health": Health.UNHEALTHY}, (8.0, 5.0, 2.0, 1.0)),
    ({"health": Health.DEGRADED}, (8.0, 5.0, 2.0, 1.0)),
], ids=["all-schedulable", "cordoned-node", "unhealthy-node", "degraded-node"])
def test_free_gpus_on_unschedulable_nodes_count_as_unavailable(
        flags: dict[str, object], expected: tuple[float, ...]) -> None:
    nodes = [node("n0"), node("n1", **flags)]
    t = gpu_totals(nodes, [held("a", "q", "n0", (0, 1)), held("b", "q", "n1", (0, 1, 2))])
    assert (t.total, t.allocated, t.idle, t.unavailable) == expected


_shares = st.lists(st.tuples(st.sampled_from(["qa", "qb", "qc"]), st.integers(0, 3),
                             st.integers(0, 3), st.sampled_from([250, 500, 1000])), max_size=12)


@given(_shares, st.booleans())
def test_totals_always_add_up_and_users_never_see_other_names(
        shares: list[tuple[str, int, int, int]], cordon: bool) -> None:
    nodes = [node("n0"), node("n1", 4, cordoned=cordon), node("n2", 4, "other")]
    ids = ["n0", "n1", "n2"]
    hs, used = [], {}
    for i, (q, n, d, m) in enumerate(shares):
        key = (ids[n % 3], d)
        if used.get(key, 0) + m <= 1000:  # the core never double-books a GPU
            used[key] = used.get(key, 0) + m
            hs.append(held(f"w{i}", q, key[0], (d,), m))
    t = gpu_totals(nodes, hs)
    assert t.allocated + t.idle + t.unavailable == pytest.approx(t.total)
    for row in node_rows(nodes, hs, lambda q: q == "qa"):
        for cell in row.devices:
            for s in cell.shares:
                assert s.queue in ("qa", None)
                assert s.workload_id is None or s.queue == "qa"


# --- queue board -------------------------------------------------------------------------------

QUEUES = [Queue("research", None, 6, 10, 2.0), Queue("nlp", "research", 4),
          Queue("vision", "research", 2), Queue("prod", None, 4, priority=10)]


def test_tree_order_puts_children_after_their_parent() -> None:
    assert [q.name for q in tree_order(QUEUES)] == ["prod", "research", "nlp", "vision"]


def test_use_counts_children_and_beyond_quota_is_borrowing() -> None:
    hs = [held("a", "nlp", "n0", (0, 1, 2, 3)), held("b", "nlp", "n1", (0, 1)),
          held("c", "vision", "n1", (2,), 500)]
    records = [record("a", "nlp", "running"), record("b", "nlp", "running"),
               record("c", "vision", "running"), record("d", "nlp", "pending", "QueueLimit"),
               record("e", "prod", "pending", "InsufficientCapacity")]
    board = queue_board(QUEUES, hs, {"nlp": 6000 + 8000, "vision": 500, "prod": 1000}, records,
                        12.0, everyone)
    rows = {r.name: r for r in board.queues}
    assert [(r.name, r.depth) for r in board.queues] == [
        ("prod", 0), ("research", 0), ("nlp", 1), ("vision", 1)]
    assert (rows["research"].used_gpus, rows["research"].borrowed_gpus) == (6.5, 0.5)
    assert (rows["nlp"].used_gpus, rows["nlp"].borrowed_gpus) == (6.0, 2.0)
    assert rows["nlp"].pending_reasons == {"QueueLimit": 1} and rows["nlp"].running == 2
    assert rows["prod"].pending_reasons == {"InsufficientCapacity": 1}
    # fair share: prod wants 1 and gets it; research is capped by its limit of 10
    assert rows["prod"].fair_share_gpus == 1.0
    assert rows["research"].fair_share_gpus == 10.0
    assert rows["research"].demand_gpus == 14.5


def test_a_member_of_a_child_queue_sees_only_it_at_the_top() -> None:
    board = queue_board(QUEUES, [], {}, [], 8.0, lambda q: q == "vision")
    assert [(r.name, r.depth) for r in board.queues] == [("vision", 0)]


# --- usage history ----------------------------------------------------------------------------

def test_a_sample_splits_each_provider_into_allocated_idle_and_unavailable() -> None:
    nodes = [node("a0", 4, "aws"), node("g0", 2, "gcp", cordoned=True)]
    s = take_sample(nodes, [held("x", "qa", "a0", (0,), 500), held("y", "qb", "g0", (0,))], 5.0)
    assert s.by_queue == {"qa": 0.5, "qb": 1.0}
    assert s.allocated_by_provider == {"aws": 0.5, "gcp": 1.0}
    assert s.idle_by_provider == {"aws": 3.5, "gcp": 0.0}
    assert s.unavailable_by_provider == {"aws": 0.0, "gcp": 1.0}
    seen = visible_point(s, lambda q: q == "qa")
    assert seen.by_queue == {"qa": 0.5, "": 1.0}


def test_history_is_bounded_ordered_and_thinned_to_the_newest() -> None:
    h = UsageHistory(keep=5)
    for t in range(8):
        h.add(take_sample([], [], float(t)))
    h.add(take_sample([], [], 3.0))  # a clock step back is dropped
    assert [s.at for s in h.since(0.0, 10)] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert [s.at for s in h.since(5.0, 10)] == [5.0, 6.0, 7.0]
    assert [s.at for s in h.since(0.0, 2)] == [4.0, 7.0]


# --- simulator reports ------------------------------------------------------------------------

def test_reports_list_only_png_and_json_and_never_escape_their_directory(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    (root / "run1").mkdir(parents=True)
    (root / "run1" / "util.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "summary.json").write_text("{}")
    (root / "notes.txt").write_text("no")
    (tmp_path / "secret.json").write_text("{}")
    (root / "link.json").symlink_to(tmp_path / "secret.json")
    assert sorted(r.name for r in list_reports(root)) == ["run1/util.png", "summary.json"]
    assert find_report(root, "run1/util.png") == (root / "run1" / "util.png").resolve()
    for bad in ["../secret.json", "link.json", "notes.txt", "/etc/passwd", "run1", "x\x00.png"]:
        assert find_report(root, bad) is None, bad
    assert list_reports(None) == [] and list_reports(tmp_path / "missing") == []
