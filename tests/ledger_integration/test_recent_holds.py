"""The list of holds is bounded (review of 4fe6624): settled holds leave the journal's memory,
so listing them read every transaction ever posted in the server's process. The API lists the
newest `limit` holds; the store names them (a walk back along the append order) and only the
settled ones among them are read back, by the workload column's index (migration 0390)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from tests.api.harness import Api, build
from tests.ledger_integration.test_journal_sql import _queues

from corral.ledger import grant, place_hold, settle
from corral.ledger.entries import Hold
from corral.store import Store
from corral.store.journal_sql import LedgerDb, SqlJournalStore

QUEUES = ("team-a", "team-b")


def _fill(store: Store, n: int = 30, settled: int = 20) -> LedgerDb:
    """`n` holds alternating between the queues, the first `settled` of them settled."""
    _queues(store, *QUEUES)
    db = LedgerDb(store)
    with db.write() as s:
        for q in QUEUES:
            grant(s.journal, key=f"g-{q}", queue=q, amount="1000", at=0)
    with db.write() as s:
        for i in range(n):
            place_hold(s.journal, workload=f"w{i:02}@0", queue=QUEUES[i % 2], amount="2", at=i)
    with db.write() as s:
        for i in range(settled):
            settle(s.journal, workload=f"w{i:02}@0", cost=Decimal("1.5"), at=100 + i)
    return db


def _view(holds: tuple[Hold, ...]) -> list[tuple[str, bool, str | None]]:
    return [(h.workload, h.open, None if h.charged is None else str(h.charged)) for h in holds]


CASES = [(5, None, False), (12, None, False), (30, None, False), (100, None, False),
         (7, {"team-a"}, False), (15, {"team-b"}, False), (3, None, True), (50, {"team-a"}, True)]


@pytest.mark.parametrize(("limit", "queues", "open_only"), CASES)
def test_the_newest_holds_are_the_tail_of_the_whole_list(
        store: Store, limit: int, queues: set[str] | None, open_only: bool) -> None:
    _fill(store)
    with LedgerDb(store).read() as s:  # a journal rebuilt from the database
        every = [h for h in s.journal.holds(open_only=open_only)
                 if queues is None or h.queue in queues]
        got = s.journal.recent_holds(limit, queues, open_only=open_only)
    assert every and _view(got) == _view(tuple(every[-limit:]))


def test_listing_settled_holds_does_not_read_the_whole_journal(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _fill(store)

    def whole(self: SqlJournalStore) -> Any:
        raise AssertionError("the whole journal was read")

    monkeypatch.setattr(SqlJournalStore, "__iter__", whole)
    with db.read() as s:
        got = s.journal.recent_holds(12, None)
    assert [h.workload for h in got] == [f"w{i:02}@0" for i in range(18, 30)]
    assert [h.open for h in got] == [False, False] + [True] * 10


def test_holds_placed_in_the_session_and_not_written_yet_are_listed(store: Store) -> None:
    db = _fill(store, n=4, settled=2)
    with db.write() as s:
        place_hold(s.journal, workload="late@0", queue="team-a", amount="1", at=50)
        assert [h.workload for h in s.journal.recent_holds(2, {"team-a"})] == ["w02@0", "late@0"]


def test_the_api_lists_the_newest_holds_within_its_limit(store: Store) -> None:
    api: Api = build(store)
    _fill(store)

    def get(path: str, **params: Any) -> Any:
        return api.client.get(path, headers=api.admin, params=params)

    r = get("/v1/ledger/holds", limit=4)
    assert r.status_code == 200, r.text
    assert [h["ref"] for h in r.json()] == ["w26@0", "w27@0", "w28@0", "w29@0"]
    r = get("/v1/ledger/queues/team-a/holds", limit=3, open_only="false")
    assert [(h["ref"], h["open"]) for h in r.json()] == [
        ("w24@0", True), ("w26@0", True), ("w28@0", True)]
    r = get("/v1/ledger/queues/team-b/holds", limit=12)
    assert [h["ref"] for h in r.json()][:3] == ["w07@0", "w09@0", "w11@0"]
    assert [h["open"] for h in r.json()].count(False) == 7
    for bad in (0, 10_001, "x"):
        r = get("/v1/ledger/holds", limit=bad)
        assert r.status_code == 422 and "limit" in r.text, r.text


def test_the_summary_builds_views_of_the_newest_open_holds_only(store: Store) -> None:
    """The Credits page's summary lists the newest SUMMARY_ITEMS open holds, newest first, and
    counts them all (review R of 378be03: it built a view of every open hold each refresh)."""
    from corral.api.ledger import SUMMARY_ITEMS

    api: Api = build(store)
    _fill(store, n=SUMMARY_ITEMS + 50, settled=20)
    r = api.client.get("/v1/ledger/summary", headers=api.admin)
    assert r.status_code == 200, r.text
    got = r.json()
    listed = api.client.get("/v1/ledger/holds", headers=api.admin,
                            params={"open_only": "true", "limit": 10_000}).json()
    assert got["holds_total"] == len(listed) == SUMMARY_ITEMS + 30
    assert got["holds"] == listed[::-1][:SUMMARY_ITEMS]
