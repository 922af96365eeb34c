"""Group commit: many small writes from many threads, one transaction (and one fsync) per batch.

    request threads / event loop        writer thread (one per GroupCommit, started on demand)
    ───────────────────────────         ───────────────────────────────────────────────────
    fut = gc.submit(item)  ──queue──>   take every queued item (up to `max_batch`)
    fut.result()  (or await)            BEGIN; apply(conn, items); COMMIT
          <──────────── set each future's result, only after COMMIT returned

A caller hears "done" only once its item's transaction has committed, so what was acknowledged
survives a crash of the process exactly as a write of its own would. Nothing waits on a timer:
an idle writer commits the first item alone at once, and whatever arrives while a commit is in
flight forms the next batch, so batches grow with load and latency stays one commit under light
load. This is the group commit of database write-ahead logs (PostgreSQL's commit_delay without the
delay; InnoDB's binlog group commit), done above the database because SQLite allows one writer
at a time and 16 threads racing for its lock sleep in its busy handler (tens to hundreds of ms).

A failed batch is retried item by item, each in its own transaction, so one bad item (an id
collision) fails alone and the others still commit. `apply` must therefore be all-or-nothing per
item list, which one transaction gives.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from sqlalchemy import Connection

from corral.store import Store

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

#: a writer with nothing to do for this long ends (the next submit starts another), so the many
#: short-lived owners in tests and tools do not leave threads behind
IDLE_EXIT_S = 2.0


class GroupCommit(Generic[In, Out]):
    """Batches `apply(conn, items) -> results` (one result per item, in order) into shared
    transactions of `store`. Thread-safe; `submit` never blocks on the database."""

    def __init__(self, store: Store, apply: Callable[[Connection, Sequence[In]], list[Out]],
                 *, max_batch: int = 256, name: str = "group-commit",
                 idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.store, self.apply, self.max_batch, self.name = store, apply, max_batch, name
        self.idle_exit_s = idle_exit_s
        self._queue: queue.SimpleQueue[tuple[In, Future[Out]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, item: In) -> Future[Out]:
        """Queue `item`; the future completes when its transaction has committed (or failed)."""
        fut: Future[Out] = Future()
        self._queue.put((item, fut))
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return fut

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_exit_s)
            except queue.Empty:
                with self._lock:
                    # Re-check under the lock: a submit that saw _running=True has already
                    # queued its item, so it is either seen here or by the next writer.
                    if self._queue.empty():
                        self._running = False
                        return
                continue
            batch = self._drain(first)
            try:
                self._commit(batch)
            except Exception as e:  # a bug in apply (say, too few results): fail, never hang
                log.exception("group commit %s failed", self.name)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)

    def _drain(self, first: tuple[In, Future[Out]]) -> list[tuple[In, Future[Out]]]:
        """`first` and whatever else is queued. A future cancelled before its batch starts (an
        awaiting request that went away) is dropped: nothing of it is written; once running, a
        future can no longer be cancelled, so its result can always be set."""
        batch, nxt = [], first
        while True:
            if nxt[1].set_running_or_notify_cancel():
                batch.append(nxt)
            if len(batch) >= self.max_batch:
                return batch
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return batch

    def _commit(self, batch: list[tuple[In, Future[Out]]]) -> None:
        if not batch:
            return
        items = [item for item, _ in batch]
        try:
            with self.store.write() as conn:
                results = self.apply(conn, items)
        except Exception as e:  # retried one by one below, where each item gets its own outcome
            if len(batch) == 1:
                batch[0][1].set_exception(e)
                return
            log.debug("a batch of %d failed; retrying its items one by one", len(batch))
            for item, fut in batch:
                self._commit_one(item, fut)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)

    def _commit_one(self, item: In, fut: Future[Out]) -> None:
        try:
            with self.store.write() as conn:
                result = self.apply(conn, [item])[0]
        except Exception as e:  # handed to the waiting caller, who re-raises it
            fut.set_exception(e)
        else:
            fut.set_result(result)
