"""Group commit: batches share a transaction, each caller hears only after its commit, and one
bad item fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from corral.store import Store
from corral.store import workloads as W
from corral.store.group_commit import GroupCommit
from corral.store.schema import WorkloadRow


def _row(wid: str) -> dict[str, object]:
    return {"id": wid, "group_id": wid, "name": "w", "queue": "q", "user": "ann", "kind": "job",
            "spec": {}, "state": "pending", "submitted_at": 1.0}


def _insert(conn: Connection, ids: Sequence[str]) -> list[int]:
    return W.insert_workloads(conn, [_row(i) for i in ids])


def _stored(store: Store) -> set[str]:
    with store.read() as c:
        return set(c.execute(select(WorkloadRow.id)).scalars())


class Gated:
    """An apply that records its batches and holds the first one until released, so the
    items submitted meanwhile queue up and form the next batch (no sleeps, no timing)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, conn: Connection, items: Sequence[str]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(timeout=30)
        return _insert(conn, items)


def test_items_queued_during_a_commit_share_the_next_transaction(store: Store) -> None:
    apply = Gated()
    gc: GroupCommit[str, int] = GroupCommit(store, apply)
    first = gc.submit("w-0")
    assert apply.entered.wait(timeout=30)
    rest = [gc.submit(f"w-{i}") for i in range(1, 20)]
    assert not any(f.done() for f in rest)  # nobody hears "done" before their commit
    apply.release.set()
    seqs = [f.result(timeout=30) for f in [first, *rest]]
    assert apply.batches == [["w-0"], [f"w-{i}" for i in range(1, 20)]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20  # each caller got its own row's seq
    assert _stored(store) == {f"w-{i}" for i in range(20)}


def test_a_bad_item_fails_alone_and_the_rest_of_its_batch_commits(store: Store) -> None:
    with store.write() as c:
        _insert(c, ["taken"])
    apply = Gated()
    gc: GroupCommit[str, int] = GroupCommit(store, apply)
    gate = gc.submit("w-0")
    assert apply.entered.wait(timeout=30)
    futures = {wid: gc.submit(wid) for wid in ["w-1", "taken", "w-2"]}
    apply.release.set()
    gate.result(timeout=30)
    with pytest.raises(IntegrityError):
        futures["taken"].result(timeout=30)
    assert all(isinstance(futures[w].result(timeout=30), int) for w in ("w-1", "w-2"))
    assert _stored(store) == {"taken", "w-0", "w-1", "w-2"}


def test_an_item_cancelled_before_its_batch_is_not_written(store: Store) -> None:
    apply = Gated()
    gc: GroupCommit[str, int] = GroupCommit(store, apply)
    gate = gc.submit("w-0")
    assert apply.entered.wait(timeout=30)
    gone, kept = gc.submit("gone"), gc.submit("kept")
    assert gone.cancel()  # what asyncio.wrap_future does when the awaiting request goes away
    apply.release.set()
    gate.result(timeout=30), kept.result(timeout=30)
    assert _stored(store) == {"w-0", "kept"}


def test_many_threads_each_get_their_own_committed_row(store: Store) -> None:
    gc: GroupCommit[str, int] = GroupCommit(store, _insert)
    got: dict[str, int] = {}

    def client(n: int) -> None:
        for j in range(25):
            wid = f"c{n}-{j}"
            got[wid] = gc.submit(wid).result(timeout=60)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.read() as c:
        by_id = dict(c.execute(select(WorkloadRow.id, WorkloadRow.seq)).all())
        assert c.execute(select(func.count()).select_from(WorkloadRow)).scalar_one() == 200
    assert got == by_id


def test_a_writer_that_went_idle_is_restarted_by_the_next_submit(store: Store) -> None:
    gc: GroupCommit[str, int] = GroupCommit(store, _insert, idle_exit_s=0.0)
    for i in range(5):  # each writer may exit as soon as the queue is empty
        assert isinstance(gc.submit(f"w-{i}").result(timeout=30), int)
    assert _stored(store) == {f"w-{i}" for i in range(5)}


def test_a_bug_in_apply_fails_the_callers_instead_of_hanging_them(store: Store) -> None:
    def short(conn: Connection, items: Sequence[str]) -> list[int]:
        return []  # fewer results than items: a bug

    gc: GroupCommit[str, int] = GroupCommit(store, short)
    fut: Future[int] = gc.submit("w-0")
    with pytest.raises(ValueError):
        fut.result(timeout=30)
