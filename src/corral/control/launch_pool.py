"""Launches off the loop's thread: a bounded pool with back-pressure.

A launch through a real engine is a round trip or several (an ``sbatch`` per array or gang,
actor creations on Ray). Made inside the step, it delays the next cycle's poll and decision by
as long as the engine takes. With a backend that allows it (`Backend.concurrent_launch`), the
launch step commits ``starting`` as before, hands the batch to this pool and returns; the next
cycles go on observing and deciding while the engine works.

    step N:   mark starting (one commit) ─> submit(batch) ──┐  (returns at once)
                                                            ▼
    pool thread:                              backend.launch_many(batch)
                                                            │
    step N+k: harvest() <── each attempt's error ───────────┘  handled on the loop's thread
              (failed / restarted / retried as in the synchronous path)

Why it is safe (nothing run twice, nothing lost):

- the commit of ``starting`` still comes before the engine call: a crash leaves a ``starting``
  row that the next leader relaunches with the same attempt (the backend's idempotency);
- while an attempt is in the pool, the loop never hands it over again: reconcile lists a
  ``starting`` row the backend does not report yet as one to relaunch, and `taken` filters
  those out; an attempt the pool launched without error stays taken until its row leaves
  ``starting`` (the backend reports it from then on);
- every store write stays on the loop's thread: the pool only calls the backend, and errors
  come back through `harvest`.

Back-pressure: at most `max_in_flight` attempts are in the pool. Work beyond that stays
``scheduled`` (its devices are still reserved by the plan) and is handed over in a later cycle,
so a slow engine slows launches, never the decisions.

Batches that wait for a thread go together: a thread that comes free takes every batch
submitted meanwhile as one `launch_many` (group commit, as a database's log writer does).
Stepping back to back, the loop hands over a batch of one or two attempts each step while an
``sbatch`` takes 50-150 ms on a busy host; launched one batch at a time, each was an ``sbatch``
per node of its own (the Slurm backend makes one array per node and shape of a batch), and
those client processes, with slurmctld's work for each, were a large share of the CPU that
corral's jobs cost beyond Slurm's own (bench/README, "Through a real Slurm"). Nothing waits
for this: a batch is merged only with batches that were waiting anyway. A merged call that
raises as a whole fails no batch for another's sake: each is launched again in a call of its
own and keeps that call's outcome.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from corral.backends.base import Backend, LaunchSpec

__all__ = ["LaunchPool"]

log = logging.getLogger(__name__)
Key = tuple[str, int]
T = TypeVar("T")


@dataclass
class _Batch(Generic[T]):
    backend: Backend
    items: list[tuple[T, LaunchSpec]]
    future: Future[list[Exception | None]] = field(default_factory=Future)


class LaunchPool(Generic[T]):
    """`threads` batches may be under way at once; `max_in_flight` attempts at most. T is what
    the caller keeps with each launch (the row it was made for) and gets back from `harvest`."""

    def __init__(self, threads: int = 2, max_in_flight: int = 4096) -> None:
        if threads < 1 or max_in_flight < 1:
            raise ValueError("threads and max_in_flight must be >= 1")
        self.threads, self.max_in_flight = threads, max_in_flight
        self._executor: ThreadPoolExecutor | None = None
        self._batches: list[_Batch[T]] = []
        self._handed: set[Key] = set()  # launched without error, not yet reported running
        # submitted, not yet taken by a thread (guarded by `_lock`: the threads take from it)
        self._waiting: list[_Batch[T]] = []
        self._lock = threading.Lock()
        self.calls = 0  # launch_many calls made (batches merged count once)
        #: called (on a pool thread) as each batch's call returns: the control loop's wake, so
        #: that the next step harvests the batch and observes what it launched
        self.on_done: Callable[[], None] | None = None

    @staticmethod
    def applies_to(backend: Backend) -> bool:
        return bool(getattr(backend, "concurrent_launch", False))

    def room(self) -> int:
        """How many more attempts may be handed over now."""
        return max(0, self.max_in_flight - sum(len(b.items) for b in self._batches))

    def taken(self) -> set[Key]:
        """Attempts the pool holds or launched: never hand these over again."""
        return {_key(s) for b in self._batches for _, s in b.items} | self._handed

    def keep_only(self, starting: set[Key]) -> None:
        """Forget launched attempts whose rows left ``starting`` (the backend reports them)."""
        self._handed &= starting

    def submit(self, backend: Backend, items: Sequence[tuple[T, LaunchSpec]]) -> None:
        if not items:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.threads,
                                                thread_name_prefix="corral-launch")
        batch = _Batch(backend, list(items))
        on_done = self.on_done
        if on_done is not None:
            batch.future.add_done_callback(lambda _: on_done())
        with self._lock:
            self._waiting.append(batch)
        self._batches.append(batch)
        self._executor.submit(self._launch_waiting)

    def _launch_waiting(self) -> None:
        """On a pool thread: every batch waiting for the same backend as the oldest one, as
        one `launch_many`; each batch's future gets its own attempts' errors. Nothing waiting
        (a thread before this one took it): return."""
        with self._lock:
            if not self._waiting:
                return
            backend = self._waiting[0].backend
            taken = [b for b in self._waiting if b.backend is backend]
            self._waiting = [b for b in self._waiting if b.backend is not backend]
            self.calls += 1
        taken = [b for b in taken if b.future.set_running_or_notify_cancel()]
        try:
            errors = _answers(backend, [s for b in taken for _, s in b.items])
        except BaseException as e:
            if not isinstance(e, Exception):  # an interpreter exit: every batch fails with it
                for b in taken:
                    b.future.set_exception(e)
                raise
            if len(taken) == 1:  # its attempts fail with it (`_errors_of`)
                taken[0].future.set_exception(e)
                return
            # The merge is ours, not the caller's: a call that raised as a whole must not fail
            # batches that would have launched on their own. Each goes again alone (a launch
            # is idempotent per attempt, as a new leader's relaunch relies on) and keeps its
            # own outcome.
            log.warning("a merged launch of %d batches raised (%s): each goes alone",
                        len(taken), e)
            for i, b in enumerate(taken):
                try:
                    _launch_alone(backend, b)
                except BaseException as exit_:  # an interpreter exit while going alone
                    for rest in taken[i + 1:]:  # no batch is left without an outcome
                        rest.future.set_exception(exit_)
                    raise
            return
        at = 0
        for b in taken:
            b.future.set_result(errors[at:at + len(b.items)])
            at += len(b.items)

    def harvest(self) -> list[tuple[T, LaunchSpec, Exception | None]]:
        """The launches that finished since the last call, each with its error (None: done)."""
        out: list[tuple[T, LaunchSpec, Exception | None]] = []
        pending: list[_Batch[T]] = []
        for batch in self._batches:
            if not batch.future.done():
                pending.append(batch)
                continue
            errors = _errors_of(batch)
            for (item, spec), error in zip(batch.items, errors, strict=True):
                if error is None:
                    self._handed.add(_key(spec))
                out.append((item, spec, error))
        self._batches = pending
        return out

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every batch under way (tests, shutdown); `harvest` then returns them."""
        for batch in list(self._batches):
            batch.future.exception(timeout=timeout)

    def close(self) -> None:
        """Let the batches under way finish (a launch is made whole or not at all)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _key(spec: LaunchSpec) -> Key:
    return spec.workload_id, spec.attempt


def _answers(backend: Backend, specs: list[LaunchSpec]) -> list[Exception | None]:
    """`_launch_all`, checked: one answer per attempt, else it raises."""
    errors = _launch_all(backend, specs)
    if len(errors) != len(specs):
        raise RuntimeError(f"launch_many answered {len(errors)} errors for {len(specs)} "
                           "attempts")
    return errors


def _launch_alone(backend: Backend, batch: _Batch[T]) -> None:
    """One batch in a call of its own: its future gets that call's answer or exception; an
    interpreter exit (not an `Exception`) is set on it too, then raised on."""
    try:
        batch.future.set_result(_answers(backend, [s for _, s in batch.items]))
    except BaseException as e:
        batch.future.set_exception(e)
        if not isinstance(e, Exception):
            raise


def _launch_all(backend: Backend, specs: list[LaunchSpec]) -> list[Exception | None]:
    """`launch_many` where the backend has it, else one `launch` after another; never raises
    for one attempt's error."""
    launch_many: Callable[[list[LaunchSpec]], list[Exception | None]] | None = getattr(
        backend, "launch_many", None)
    if launch_many is not None:
        return launch_many(specs)
    out: list[Exception | None] = []
    for spec in specs:
        try:
            backend.launch(spec)
        except Exception as e:  # handed back to the loop, per attempt
            out.append(e)
        else:
            out.append(None)
    return out


def _errors_of(batch: _Batch[T]) -> list[Exception | None]:
    """Each attempt's error; a batch whose call itself raised fails each of its attempts with
    that error (the loop decides per attempt what it means)."""
    failure = batch.future.exception()
    if failure is None:
        return batch.future.result()
    log.warning("a launch batch of %d raised: %s", len(batch.items), failure)
    error = failure if isinstance(failure, Exception) else RuntimeError(str(failure))
    return [error for _ in batch.items]
