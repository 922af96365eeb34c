"""GET /v1/ledger/grants from the ledger's grant index (issue 14), on both databases: the same
answer as the journal's transactions give (after spends, another writer's grant, a checkpoint
and a new process), without decoding the journal: a request reads only the grant rows appended
since the last one, and none when nothing was appended."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from tests.api.harness import Api, build

from corral.api import ledger as api_ledger
from corral.ledger import Journal, TxKind, grant
from corral.store import Store
from corral.store.journal_sql import LedgerDb
from sql_trace import statements


def _from_journal(store: Store) -> list[dict[str, Any]]:
    """What the route answered before the index: the journal's grant transactions."""
    with LedgerDb(store).read() as s:
        j = s.journal
        out = []
        for tx in j.transactions():
            if tx.intent.kind is not TxKind.GRANT:
                continue
            left = j.balance(tx.opens[0].account).quantize(j.currency.quantum)
            out.append({"key": tx.key, "queue": tx.intent.queue,
                        "amount": str(tx.intent.amount), "left": str(left), "at": float(tx.at),
                        "expires_at": None if tx.intent.expires_at is None
                        else float(tx.intent.expires_at), "memo": tx.memo})
        return out


def _grants(api: Api, who: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = api.client.get("/v1/ledger/grants", headers=who or api.admin)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The route may not walk the journal; the reference above does, outside requests."""
    walk = Journal.transactions
    in_request = {"on": False}

    def refuse(self: Journal) -> Iterator[Any]:
        assert not in_request["on"], "GET /v1/ledger/grants walked the journal"
        return walk(self)

    monkeypatch.setattr(Journal, "transactions", refuse)
    original = api_ledger._grant_views

    def marked(*args: Any) -> Any:
        in_request["on"] = True
        try:
            return original(*args)
        finally:
            in_request["on"] = False

    monkeypatch.setattr(api_ledger, "_grant_views", marked)
    yield


def test_the_grants_are_the_journals_without_walking_it(store: Store, no_decoding: None) -> None:
    api = build(store)
    for body in ({"queue": "team-a", "amount": "100.00", "key": "g-a", "memo": "first"},
                 {"queue": "team-b", "amount": "50.00", "key": "g-b",
                  "expires_at": 4_000_000_000.0}):
        assert api.client.post("/v1/ledger/grants", headers=api.admin,
                               json=body).status_code == 201
    assert _grants(api) == _from_journal(store)
    ok = api.client.post("/v1/ledger/transfers", headers=api.admin,  # spends g-a's lot
                         json={"source": "team-a", "target": "team-b", "amount": "30.00"})
    assert ok.status_code == 201
    other = LedgerDb(store)  # another writer (an API replica): the index catches up
    with other.write() as s:
        grant(s.journal, key="g-other", queue="team-a", amount=Decimal("7.00"),
              at=Decimal("1.5"), memo="replica")
    listed = _grants(api)
    assert [(g["key"], g["left"]) for g in listed] == [
        ("g-a", "70.00"), ("g-b", "50.00"), ("g-other", "7.00")]
    assert listed == _from_journal(store)
    assert [g["key"] for g in _grants(api, api.ann)] == ["g-a", "g-other"]  # team-a only
    assert [g["key"] for g in api.client.get("/v1/ledger/queues/team-b/grants",
                                             headers=api.admin).json()] == ["g-b"]
    api_ledger._LEDGERS[api.store].checkpoint()  # the API's journal forgets what it covers
    with other.write() as s:
        grant(s.journal, key="g-late", queue="team-b", amount=Decimal("1.00"),
              at=Decimal("2.5"))
    assert _grants(api) == _from_journal(store)
    del api_ledger._LEDGERS[api.store]  # as a new process: rebuilt from the checkpoint
    assert _grants(api) == _from_journal(store)
    assert [g["key"] for g in _grants(api)] == ["g-a", "g-b", "g-other", "g-late"]


def test_a_request_reads_only_the_grants_appended_since_the_last(store: Store) -> None:
    api = build(store)
    assert api.client.post("/v1/ledger/grants", headers=api.admin,
                           json={"queue": "team-a", "amount": "10.00"}).status_code == 201
    _grants(api)
    quiet = [s for s, _ in statements(store, lambda: _grants(api))]
    assert not [s for s in quiet if "ledger_postings" in s], quiet  # nothing decoded
    assert not [s for s in quiet if "ledger_transactions.kind =" in s], quiet  # nothing new
    with LedgerDb(store).write() as s:
        grant(s.journal, key="g-2", queue="team-b", amount=Decimal("5.00"), at=Decimal("1"))
    grown = [s for s, _ in statements(store, lambda: _grants(api))]
    reads = [s for s in grown if "ledger_transactions.kind =" in s]
    assert len(reads) == 1 and "ledger_transactions.seq >" in reads[0], grown
    assert [g["key"] for g in _grants(api)][-1] == "g-2"
