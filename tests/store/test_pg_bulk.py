"""The step's bulk writes on PostgreSQL as one statement per chunk (`corral.store.pg_bulk`:
UPDATE ... FROM unnest(arrays); events, placements and journal transactions by COPY) write
what the row-by-row statements wrote, and keep refusing a stale write. Every test runs on both
stores (SQLite keeps its driver executemany): the same expectations hold on each."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.exc import IntegrityError

from corral.core.model import WorkerAssignment
from corral.ledger import DEFAULT_CURRENCY, Account, AccountKind, Intent, Lot, Transaction, TxKind
from corral.store import Store
from corral.store import workloads as W
from corral.store.journal_sql import insert_transactions
from corral.store.ledger_tables import LedgerTransaction
from corral.store.schema import Event, Placement, WorkloadRow


def _row(wid: str) -> dict[str, Any]:
    return {"id": wid, "group_id": wid, "name": wid, "queue": "q", "user": "u", "kind": "job",
            "spec": {"name": wid}, "state": "pending", "submitted_at": 1.0}


def _versions(store: Store) -> dict[str, tuple[int, int, str, str]]:
    with store.read() as c:
        return {r[0]: tuple(r[1:]) for r in c.execute(
            select(WorkloadRow.id, WorkloadRow.version, WorkloadRow.change_seq,
                   WorkloadRow.state, WorkloadRow.reason_message))}


def _statements(store: Store) -> tuple[list[str], Any]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.startswith("UPDATE"):
            seen.append(sql.split(" SET ")[0] + (" (many)" if many else ""))

    event.listen(store.engine, "before_cursor_execute", note)
    return seen, lambda: event.remove(store.engine, "before_cursor_execute", note)


def test_a_stale_version_is_refused_and_the_rest_written_in_one_statement(store: Store) -> None:
    with store.write() as c:
        W.insert_workloads(c, [_row(f"w{i}") for i in range(6)])
    before = _versions(store)
    seen, stop = _statements(store)
    try:
        with store.write() as c:
            written = W.update_many_versioned(c, [
                {"id": f"w{i}", "version": before[f"w{i}"][0] + (i == 2), "state": "scheduled",
                 "reason_message": f"m{i}", "started_at": None, "exit_code": None}
                for i in range(6)])
    finally:
        stop()
    assert written == 5  # w2's version was stale: not written
    after = _versions(store)
    assert after["w2"] == before["w2"]
    stamps = {after[f"w{i}"][1] for i in range(6) if i != 2}
    assert len(stamps) == 1 and stamps.pop() > before["w0"][1]  # one change number, newer
    for i in (0, 1, 3, 4, 5):
        assert after[f"w{i}"][0] == before[f"w{i}"][0] + 1
        assert after[f"w{i}"][2:] == ("scheduled", f"m{i}")
    one = "UPDATE workloads AS t" if store.dialect == "postgresql" else "UPDATE workloads (many)"
    assert seen == [one]



def test_a_failed_bulk_update_raises_its_own_error(store: Store) -> None:
    """A NOT NULL column set to None: the statement's own IntegrityError, on both stores (the
    restore of the planner setting after it once ran in the aborted transaction and raised
    InFailedSqlTransaction in its place: review of 47419ff)."""
    with store.write() as c:
        W.insert_workloads(c, [_row("w0")])
    version = _versions(store)["w0"][0]
    with pytest.raises(IntegrityError), store.write() as c:
        W.update_many_versioned(c, [{"id": "w0", "version": version, "state": None,
                                     "reason_message": "m", "started_at": None,
                                     "exit_code": None}])
    assert _versions(store)["w0"][0] == version

def test_an_id_given_twice_is_written_twice_in_order(store: Store) -> None:
    """An UPDATE ... FROM writes a row once whatever the source rows: a repeated id goes
    through the row-by-row path, which writes (or refuses) each in order as before."""
    with store.write() as c:
        W.insert_workloads(c, [_row("a"), _row("b")])
    v = _versions(store)
    with store.write() as c:
        # informational (no bump): both writes land, the last one wins
        assert W.update_many_versioned(c, [
            {"id": "a", "version": v["a"][0], "reason_message": "first"},
            {"id": "b", "version": v["b"][0], "reason_message": "only"},
            {"id": "a", "version": v["a"][0], "reason_message": "second"}], bump=False) == 3
    assert _versions(store)["a"][2:] == ("pending", "second")
    with store.write() as c:
        # versioned: the second write of "a" at the same version is stale once the first bumped
        assert W.update_many_versioned(c, [
            {"id": "a", "version": v["a"][0], "reason_message": "x"},
            {"id": "a", "version": v["a"][0], "reason_message": "y"}]) == 1
    assert _versions(store)["a"][0] == v["a"][0] + 1
    assert _versions(store)["a"][2:] == ("pending", "x")


def test_placement_states_are_set_per_worker(store: Store) -> None:
    with store.write() as c:
        W.insert_many_placements(c, [
            ("w1", 1, [WorkerAssignment(0, "n1", (0, 1), 1000, 0),
                       WorkerAssignment(1, "n2", (3,), 500, 40)]),
            ("w2", 2, [WorkerAssignment(0, "n1", (2,), 1000, 0)])])
        W.set_many_placement_states(c, [
            ("w1", 1, 1, "ended", 3, "Failed"), ("w2", 2, 0, "running", None, ""),
            ("w9", 1, 0, "ended", 0, "gone")])  # no such placement: nothing written
    with store.read() as c:
        got = sorted(tuple(r) for r in c.execute(select(
            Placement.workload_id, Placement.attempt, Placement.worker, Placement.node_id,
            Placement.devices, Placement.milli_per_device, Placement.gpu_memory_mib_per_device,
            Placement.state, Placement.exit_code, Placement.reason)))
    assert got == [("w1", 1, 0, "n1", [0, 1], 1000, 0, "planned", None, ""),
                   ("w1", 1, 1, "n2", [3], 500, 40, "ended", 3, "Failed"),
                   ("w2", 2, 0, "n1", [2], 1000, 0, "running", None, "")]


def test_placing_an_attempt_again_replaces_its_workers(store: Store) -> None:
    with store.write() as c:
        W.insert_many_placements(c, [
            ("w1", 1, [WorkerAssignment(0, "n1", (0,), 1000, 0),
                       WorkerAssignment(1, "n1", (1,), 1000, 0)]),
            ("w1", 2, [WorkerAssignment(0, "n3", (0,), 1000, 0)])])
    with store.write() as c:  # attempt 1 placed again, on one worker: the old two go
        W.insert_many_placements(c, [("w1", 1, [WorkerAssignment(0, "n2", (5,), 250, 0)])])
    with store.read() as c:
        got = sorted(tuple(r) for r in c.execute(select(
            Placement.workload_id, Placement.attempt, Placement.worker, Placement.node_id,
            Placement.devices, Placement.milli_per_device)))
    assert got == [("w1", 1, 0, "n2", [5], 250), ("w1", 2, 0, "n3", [0], 1000)]


def test_copied_events_store_what_an_insert_stores(store: Store) -> None:
    """The events' COPY stores the text SQLAlchemy's INSERT stores (the JSON column's text
    byte for byte, floats exactly), ids in the order given."""
    events = [{"at": 1800000000.123456, "kind": "transition", "reason": "Scheduled",
               "workload_id": "w1", "from_state": "pending", "to_state": "scheduled",
               "attempt": 1, "message": "placed on n1\ttab \\ back", "data": {"b": 1, "a": [1.5]}},
              {"at": 2.0, "kind": "info", "reason": "r"},
              {"at": 3.0, "kind": "eviction", "reason": "r", "workload_id": "w2",
               "data": {"for_workload": None, "move": True, "x": "é\n"}}]
    with store.write() as c:
        c.execute(insert(Event), [{"workload_id": None, "subject": "", "from_state": "",
                                   "to_state": "", "attempt": 0, "message": "", "data": {},
                                   **e} for e in events])
        W.append_events(c, events)
    with store.read() as c:
        rows = c.execute(text("SELECT id, at, kind, workload_id, subject, from_state, to_state,"
                              " attempt, reason, message, CAST(data AS TEXT) FROM events"
                              " ORDER BY id")).all()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [tuple(r[1:]) for r in rows[:3]] == [tuple(r[1:]) for r in rows[3:]]


def _tx(key: str, amount: str, lapses: str | None = None) -> Transaction:
    opens = (Lot(Account(AccountKind.GRANTED, "q", key), lapses and Decimal(lapses)),)
    return Transaction(key=key, at=Decimal("1800000000.5"),
                       intent=Intent(TxKind.GRANT, "q", Decimal(amount)), postings=(),
                       opens=opens if lapses is not None else ())


def test_journal_transactions_keep_their_order_and_a_taken_key_is_an_integrity_error(
        store: Store) -> None:
    with store.write() as c:
        last = insert_transactions(c, [_tx(f"k{i}", f"{i}.25", "1900000000.5" if i == 1 else
                                               None) for i in range(5)], DEFAULT_CURRENCY)
    with store.read() as c:
        got = c.execute(select(LedgerTransaction.seq, LedgerTransaction.key,
                               LedgerTransaction.amount, LedgerTransaction.opens)
                        .order_by(LedgerTransaction.seq)).all()
    lot = [["granted", "q", "k1", "1900000000.5"]]
    assert [(k, a, o) for _, k, a, o in got] == [(f"k{i}", f"{i}.25", lot if i == 1 else [])
                                                 for i in range(5)]
    assert got[-1][0] == last
    with pytest.raises(IntegrityError), store.write() as c:
        insert_transactions(c, [_tx("k9", "1"), _tx("k3", "1")], DEFAULT_CURRENCY)

