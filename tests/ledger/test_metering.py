from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.ledger import (
    ConflictingEventError,
    EndReason,
    LedgerInputError,
    MeterLog,
    PriceCatalog,
    PriceRule,
    WorkerEnded,
    WorkerStarted,
    meter,
    usage_cost,
)

from .builders import ended, started

Event = WorkerStarted | WorkerEnded


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [
        pytest.param(
            [started(at=0), ended(at=3600)], 9999, [(0, 0, "3600", False)], id="one-attempt"
        ),
        pytest.param([started(at=100)], 400, [(0, 0, "300", True)], id="open-metered-to-now"),
        pytest.param([started(at=100)], 50, [(0, 0, "0", True)], id="now-before-start"),
        pytest.param(
            [
                started(at=0),
                ended(at=600, reason=EndReason.PREEMPTED),
                started(at=900, attempt=1),
                ended(at=1000, attempt=1),
            ],
            5000,
            [(0, 0, "600", False), (0, 1, "100", False)],
            id="restart-after-preemption-is-a-new-attempt",
        ),
        pytest.param(
            [started(at=0, worker=0), started(at=0, worker=1), ended(at=10, worker=1)],
            20,
            [(0, 0, "20", True), (1, 0, "10", False)],
            id="gang-workers-metered-separately",
        ),
        pytest.param(
            [started(at=0.1), ended(at=0.3)], 1, [(0, 0, "0.2", False)], id="float-times-exact"
        ),
    ],
)
def test_usage_from_lifecycle(
    events: list[Event], now: int, expected: list[tuple[int, int, str, bool]]
) -> None:
    usage = meter(events, now)
    assert [(u.worker, u.attempt, u.seconds, u.open) for u in usage] == [
        (w, a, Decimal(s), o) for w, a, s, o in expected
    ]


def test_fractional_gpu_pays_its_fraction() -> None:
    (record,) = meter([started(milli=250, at=0), ended(at=7200)], 7200)
    assert record.milli_gpu_seconds == 1_800_000
    assert record.gpu_seconds == Decimal("1800")
    catalog = PriceCatalog([PriceRule.of("4.00")])
    assert usage_cost(record, catalog) == 2  # 0.25 GPU x 2 h x 4.00


def test_duplicates_count_once_and_order_does_not_matter() -> None:
    log = MeterLog()
    assert log.record(ended(at=50, reason=EndReason.FAILED)) is True
    assert log.orphans and log.usage(100) == ()  # an end without its start meters nothing
    assert log.record(started(at=10)) is True
    assert log.record(started(at=10)) is False
    assert log.record(ended(at=50, reason=EndReason.FAILED)) is False
    (record,) = log.usage(100)
    assert (record.seconds, record.end_reason, log.orphans) == (40, EndReason.FAILED, ())


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(started(at=0), started(at=1), id="start-time-differs"),
        pytest.param(started(milli=500), started(milli=1000), id="share-differs"),
        pytest.param(ended(at=5), ended(at=5, reason=EndReason.FAILED), id="reason-differs"),
    ],
)
def test_conflicting_duplicates_are_refused(first: Event, second: Event) -> None:
    log = MeterLog([first])
    with pytest.raises(ConflictingEventError, match="already seen with other content"):
        log.record(second)


def test_end_before_start_is_refused_whichever_comes_first() -> None:
    with pytest.raises(LedgerInputError, match="before it started"):
        MeterLog([started(at=100), ended(at=50)])
    with pytest.raises(LedgerInputError, match="before it started"):
        MeterLog([ended(at=50), started(at=100)])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"milli": 0}, "milli", id="zero-share"),
        pytest.param({"worker": -1}, "worker", id="negative-worker"),
        pytest.param({"queue": ""}, "queue", id="no-queue"),
        pytest.param({"workload": ""}, "workload_id", id="no-workload"),
    ],
)
def test_bad_events_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(LedgerInputError) as err:
        started(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


attempts = st.lists(
    st.tuples(
        st.sampled_from(["w1", "w2", "w3"]),
        st.integers(0, 2),  # worker
        st.integers(0, 2),  # attempt
        st.integers(0, 1000),  # start
        st.one_of(st.none(), st.integers(0, 1000)),  # duration, None = still running
        st.sampled_from([250, 500, 1000, 8000]),
    ),
    max_size=12,
    unique_by=lambda t: t[:3],
)


@settings(max_examples=100, deadline=None)
@given(attempts=attempts, data=st.data(), now=st.integers(0, 3000))
def test_metering_is_idempotent_and_order_free(
    attempts: list[tuple[str, int, int, int, int | None, int]], data: st.DataObject, now: int
) -> None:
    events: list[Event] = []
    for workload, worker, attempt, start, duration, milli in attempts:
        events.append(started(workload, at=start, worker=worker, attempt=attempt, milli=milli))
        if duration is not None:
            events.append(ended(workload, at=start + duration, worker=worker, attempt=attempt))
    replayed = data.draw(
        st.permutations(
            events + data.draw(st.lists(st.sampled_from(events)) if events else st.just([]))
        )
    )
    assert meter(replayed, now) == meter(events, now)
    expected = sum(
        (
            milli * (duration if duration is not None else max(0, now - start))
            for _, _, _, start, duration, milli in attempts
        ),
        0,
    )
    assert sum((u.milli_gpu_seconds for u in meter(replayed, now)), Decimal(0)) == expected
