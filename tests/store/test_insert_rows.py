"""`insert_rows` (the driver's own executemany on SQLite) stores what SQLAlchemy's insert
stores: JSON converted, constant Python-side defaults filled in, the rest as given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, delete, insert, select

from corral.core.model import WorkerAssignment
from corral.store import Store
from corral.store import workloads as W
from corral.store.driver_bulk import insert_rows
from corral.store.ledger_tables import LedgerTransaction
from corral.store.schema import Event, Placement


def _rows(prefix: str) -> list[dict[str, Any]]:
    # memo, workload and counterparty left out: their defaults ("") must be filled in
    return [{"key": f"{prefix}{i}", "at": "1.5", "kind": "grant", "queue": "q",
             "amount": "2.25", "expires_at": None if i % 2 else "9.75",
             "opens": [["credits", "q", f"lot{i}", None]] if i % 2 else [], "at_s": 1.5}
            for i in range(3)]


def test_rows_stored_by_the_driver_equal_sqlalchemys(store: Store) -> None:
    table = LedgerTransaction.__table__
    assert isinstance(table, Table)
    with store.write() as c:
        insert_rows(c, table, _rows("a"))
        c.execute(insert(table), _rows("b"))
    with store.read() as c:
        got = {r.key: r for r in c.execute(select(LedgerTransaction))}

    def fields(r: Any) -> tuple[Any, ...]:
        return (r.at, r.kind, r.queue, r.amount, r.workload, r.counterparty, r.expires_at,
                r.memo, r.opens, r.at_s)

    assert [fields(got[f"a{i}"]) for i in range(3)] == [fields(got[f"b{i}"]) for i in range(3)]
    assert got["a1"].opens == [["credits", "q", "lot1", None]] and got["a0"].memo == ""


def test_events_and_placements_in_bulk_are_sqlalchemys_rows(store: Store) -> None:
    """`append_events` and `insert_many_placements` go through `insert_rows` (a step writes
    30,000 events): each row as SQLAlchemy's own executemany stores it, JSON and all."""
    events = [{"at": 1.5, "kind": "transition", "reason": "Placed", "message": "on n1",
               "workload_id": "w1", "from_state": "pending", "to_state": "scheduled",
               "attempt": 2, "data": {"backfilled": True}},
              {"at": 2.0, "kind": "info", "reason": "Released", "workload_id": "w2"},
              {"at": 2.5, "kind": "eviction", "reason": "preempt", "message": "",
               "workload_id": None, "data": {"for_workload": "w9", "move": False}}]
    assignments = (WorkerAssignment(0, "n1", (0, 3), 1000, 81920),
                   WorkerAssignment(1, "n2", (), 0, 0))
    with store.write() as c:
        W.append_events(c, events)
        W.insert_many_placements(c, [("w1", 2, assignments)])
    with store.read() as c:
        bulk = [_event(r) for r in c.execute(select(Event).order_by(Event.id))]
        placed = [_placement(r) for r in c.execute(select(Placement).order_by(Placement.worker))]
    with store.write() as c:
        c.execute(delete(Event))
        c.execute(delete(Placement))
        c.execute(insert(Event), [{"workload_id": None, "subject": "", "from_state": "",
                                   "to_state": "", "attempt": 0, "message": "", "data": {},
                                   **e} for e in events])
        c.execute(insert(Placement), [
            {"workload_id": "w1", "attempt": 2, "worker": a.worker, "node_id": a.node_id,
             "devices": list(a.devices), "milli_per_device": a.milli_per_device,
             "gpu_memory_mib_per_device": a.gpu_memory_mib_per_device, "state": "planned",
             "reason": ""} for a in assignments])
    with store.read() as c:
        assert bulk == [_event(r) for r in c.execute(select(Event).order_by(Event.id))]
        assert placed == [_placement(r) for r in
                          c.execute(select(Placement).order_by(Placement.worker))]
    assert bulk[0][-1] == {"backfilled": True} and placed[0][4] == [0, 3]


def _event(r: Any) -> tuple[Any, ...]:
    return (r.at, r.kind, r.workload_id, r.subject, r.from_state, r.to_state, r.attempt,
            r.reason, r.message, r.data)


def _placement(r: Any) -> tuple[Any, ...]:
    return (r.workload_id, r.attempt, r.worker, r.node_id, r.devices, r.milli_per_device,
            r.gpu_memory_mib_per_device, r.state, r.exit_code, r.reason)


def test_placement_states_in_bulk_are_written_per_worker(store: Store) -> None:
    """`set_many_placement_states` (SQLite: through the driver) sets state, exit code and
    reason of exactly the workers named, as SQLAlchemy's update does."""
    assignments = tuple(WorkerAssignment(k, f"n{k}", (k,), 1000, 81920) for k in range(3))
    with store.write() as c:
        W.insert_many_placements(c, [("w1", 0, assignments), ("w2", 0, assignments)])
        W.set_many_placement_states(c, [("w1", 0, 1, "failed", 3, "OOMKilled"),
                                        ("w2", 0, 0, "running", None, "")])
    with store.read() as c:
        got = {(r.workload_id, r.worker): (r.state, r.exit_code, r.reason)
               for r in c.execute(select(Placement))}
    assert got == {("w1", 0): ("planned", None, ""), ("w1", 1): ("failed", 3, "OOMKilled"),
                   ("w1", 2): ("planned", None, ""), ("w2", 0): ("running", None, ""),
                   ("w2", 1): ("planned", None, ""), ("w2", 2): ("planned", None, "")}
