"""Metering: lifecycle events in, exact GPU-second usage records out.

Each worker of a workload runs in *attempts*: attempt 0 is its first start, and every restart
(after a preemption, a failure, a move) is a new attempt with its own start and end. An attempt
is reported by two events:

- `WorkerStarted`: where and how it runs (queue, user, provider, region, node, GPU model,
  capacity kind, milli-GPU share: 1000 per whole GPU, 250 for a quarter, 8000 for eight GPUs);
- `WorkerEnded`: when and why it ended (stopped, preempted, failed, restarted).

Usage is a pure function of the *set* of events and `now`, so it is:

- **idempotent**: an event seen twice counts once (same identity, same content); the same
  identity with different content is a `ConflictingEventError`, never a silent double count;
- **order-free**: events may arrive in any order (an end before its start is held until the
  start arrives; until then it is an orphan and meters nothing, as there is nothing to price);
- **open-ended**: an attempt without an end is metered up to `now` (and not before its start).

Usage is exact: milli-GPU-seconds are `milli x (end - start)` as a Decimal, with times read
exactly (`corral.ledger.instants`); GPU-seconds are that / 1000, still exact.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from corral.core.model import CapacityKind
from corral.ledger.errors import ConflictingEventError, LedgerInputError
from corral.ledger.instants import Instant, TimeLike, to_instant
from corral.ledger.prices import PriceCatalog, PriceKey

__all__ = [
    "EndReason",
    "MeterLog",
    "UsageRecord",
    "WorkerEnded",
    "WorkerStarted",
    "meter",
    "usage_cost",
]


class EndReason(enum.StrEnum):
    STOPPED = "stopped"
    PREEMPTED = "preempted"
    FAILED = "failed"
    RESTARTED = "restarted"


AttemptId = tuple[str, int, int]  # (workload id, worker index, attempt)


@dataclass(frozen=True, slots=True)
class WorkerStarted:
    """Attempt `attempt` of worker `worker` of `workload_id` started at `at` on this capacity."""

    workload_id: str
    worker: int
    attempt: int
    at: Instant
    queue: str
    user: str
    provider: str
    region: str
    node: str
    gpu_model: str
    capacity_kind: CapacityKind
    milli: int

    def __post_init__(self) -> None:
        _check_identity(self.workload_id, self.worker, self.attempt)
        object.__setattr__(self, "at", to_instant(self.at, "at"))
        if isinstance(self.milli, bool) or not isinstance(self.milli, int) or self.milli <= 0:
            raise LedgerInputError(
                "milli", f"{self.milli!r} is not a positive int", "1000 per GPU, 250 for a quarter"
            )
        if not self.queue:
            raise LedgerInputError("queue", "is empty", "name the workload's queue")
        object.__setattr__(self, "capacity_kind", CapacityKind(self.capacity_kind))

    @property
    def identity(self) -> AttemptId:
        return (self.workload_id, self.worker, self.attempt)


@dataclass(frozen=True, slots=True)
class WorkerEnded:
    """Attempt `attempt` of worker `worker` of `workload_id` ended at `at`, for `reason`."""

    workload_id: str
    worker: int
    attempt: int
    at: Instant
    reason: EndReason = EndReason.STOPPED

    def __post_init__(self) -> None:
        _check_identity(self.workload_id, self.worker, self.attempt)
        object.__setattr__(self, "at", to_instant(self.at, "at"))
        object.__setattr__(self, "reason", EndReason(self.reason))

    @property
    def identity(self) -> AttemptId:
        return (self.workload_id, self.worker, self.attempt)


LifecycleEvent = WorkerStarted | WorkerEnded


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """Exact usage of one attempt over [start, end). `open`: still running, metered to `now`."""

    workload_id: str
    worker: int
    attempt: int
    queue: str
    user: str
    provider: str
    region: str
    node: str
    gpu_model: str
    capacity_kind: CapacityKind
    milli: int
    start: Instant
    end: Instant
    open: bool
    end_reason: EndReason | None

    @property
    def seconds(self) -> Decimal:
        return self.end - self.start

    @property
    def milli_gpu_seconds(self) -> Decimal:
        return self.milli * self.seconds

    @property
    def gpu_seconds(self) -> Decimal:
        # Shifting the exponent divides by 1000 == MILLI_PER_GPU exactly, whatever the precision.
        return self.milli_gpu_seconds.scaleb(-3)

    @property
    def price_key(self) -> PriceKey:
        return PriceKey(self.provider, self.region, self.gpu_model, self.capacity_kind)

    def clipped(self, start: Instant, end: Instant) -> UsageRecord | None:
        """The part of this record inside [start, end), or None if they do not overlap."""
        lo, hi = max(self.start, start), min(self.end, end)
        if hi <= lo:
            return None
        return _replace_span(self, lo, hi)


class MeterLog:
    """The set of lifecycle events seen so far, deduplicated by identity."""

    def __init__(self, events: Iterable[LifecycleEvent] = ()) -> None:
        self._starts: dict[AttemptId, WorkerStarted] = {}
        self._ends: dict[AttemptId, WorkerEnded] = {}
        for event in events:
            self.record(event)

    def record(self, event: LifecycleEvent) -> bool:
        """Add an event. True if it was new, False for a duplicate; conflicting content raises."""
        seen: dict[AttemptId, WorkerStarted] | dict[AttemptId, WorkerEnded]
        seen = self._starts if isinstance(event, WorkerStarted) else self._ends
        previous = seen.get(event.identity)
        if previous is not None:
            if previous != event:
                raise ConflictingEventError(
                    "event",
                    f"{type(event).__name__} for workload {event.workload_id} worker "
                    f"{event.worker} attempt {event.attempt} was already seen with other content",
                    "report each attempt's start and end once; a restart is a new attempt",
                )
            return False
        self._check_order(event)
        if isinstance(event, WorkerStarted):
            self._starts[event.identity] = event
        else:
            self._ends[event.identity] = event
        return True

    def usage(self, now: TimeLike) -> tuple[UsageRecord, ...]:
        """One record per started attempt, sorted by (workload, worker, attempt)."""
        when = to_instant(now, "now")
        return tuple(
            _record(start, self._ends.get(identity), when)
            for identity, start in sorted(self._starts.items())
        )

    @property
    def orphans(self) -> tuple[WorkerEnded, ...]:
        """Ends whose start has not been seen (yet); they meter nothing."""
        return tuple(e for i, e in sorted(self._ends.items()) if i not in self._starts)

    def _check_order(self, event: LifecycleEvent) -> None:
        start = event if isinstance(event, WorkerStarted) else self._starts.get(event.identity)
        end = event if isinstance(event, WorkerEnded) else self._ends.get(event.identity)
        if start is not None and end is not None and end.at < start.at:
            raise LedgerInputError(
                "event.at",
                f"attempt {event.attempt} of worker {event.worker} of {event.workload_id} "
                f"ends at {end.at}, before it started at {start.at}",
                "check the event times (seconds since the epoch)",
            )


def meter(events: Iterable[LifecycleEvent], now: TimeLike) -> tuple[UsageRecord, ...]:
    """Usage of a set of events at `now` (see `MeterLog`)."""
    return MeterLog(events).usage(now)


def usage_cost(record: UsageRecord, catalog: PriceCatalog) -> Fraction:
    """Exact cost of a usage record, split at price changes."""
    return catalog.cost(record.price_key, record.milli, record.start, record.end)


def _record(start: WorkerStarted, end: WorkerEnded | None, now: Instant) -> UsageRecord:
    stop = max(start.at, now) if end is None else end.at
    return UsageRecord(
        workload_id=start.workload_id,
        worker=start.worker,
        attempt=start.attempt,
        queue=start.queue,
        user=start.user,
        provider=start.provider,
        region=start.region,
        node=start.node,
        gpu_model=start.gpu_model,
        capacity_kind=start.capacity_kind,
        milli=start.milli,
        start=start.at,
        end=stop,
        open=end is None,
        end_reason=None if end is None else end.reason,
    )


def _replace_span(record: UsageRecord, start: Instant, end: Instant) -> UsageRecord:
    return replace(record, start=start, end=end)


def _check_identity(workload_id: str, worker: int, attempt: int) -> None:
    if not workload_id:
        raise LedgerInputError("workload_id", "is empty", "pass the workload's id")
    for name, value in (("worker", worker), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LedgerInputError(name, f"{value!r} is not an int >= 0", "count from 0")
