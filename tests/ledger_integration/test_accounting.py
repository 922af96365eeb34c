"""The ledger in the control loop, on a fake backend and a manual clock, on both databases:
admission with the ledger's sentence, holds, exact metering, settlement per attempt, rolling
top-ups, unmetered queues, `enforce: false`, replays that charge nothing twice, preempted and
requeued attempts, and fractional GPUs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.control.rig import Rig

from corral.control.accounting import Accounting, LedgerSettings, attempt_ref
from corral.core.reasons import BUDGET_EXCEEDED
from corral.ledger import Account, Hold, PriceRule, Statement, grant, statement
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import workloads as W
from corral.store.journal_sql import LedgerDb

PRICE = "3.60"  # per H100-hour: one GPU-second costs exactly 0.001


def _rig(store: Store, credits: str | None = "100", **settings: object) -> Rig:
    rig = Rig(store, admission=Accounting(store, settings=LedgerSettings(**settings)))  # type: ignore[arg-type]
    with store.write() as c:
        LR.add_price(c, PriceRule.of(PRICE, gpu_model="H100"), "api", 0.0)
    if credits is not None:
        with LedgerDb(store).write() as s:
            grant(s.journal, key="g1", queue="q", amount=credits, at=0)
    return rig


def _statement(store: Store, now: float, queue: str = "q") -> Statement:
    with LedgerDb(store).read() as s:
        return statement(s.journal, queue, Decimal(repr(now)))


def _gpu_seconds(store: Store, wid: str, attempt: int) -> Decimal:
    with store.read() as c:
        usage = LR.usage_records(c, Decimal(10**9), workload_id=wid, attempt=attempt)
    assert usage and all(not u.open for u in usage)
    return sum((u.gpu_seconds for u in usage), Decimal(0))


def test_work_whose_hold_cannot_be_covered_stays_pending_with_the_sentence(store: Store) -> None:
    rig = _rig(store, credits="1.00")
    wid = rig.submit(gpus=1, max_runtime="2h")
    rig.step()
    rec = rig.get(wid)
    assert rec.state == "pending" and rec.reason_code == BUDGET_EXCEEDED
    assert rec.reason_message == "queue q needs 7.20 credits held, 1.00 available"


def test_work_ahead_in_the_same_cycle_is_counted(store: Store) -> None:
    rig = _rig(store, credits="10.00")
    first = rig.submit(gpus=1, max_runtime="2h", priority=5)  # 7.20
    second = rig.submit(gpus=1, max_runtime="2h")
    rig.step()
    assert rig.state(first) == "starting"
    assert rig.get(second).reason_code == BUDGET_EXCEEDED
    assert "needs 7.20 credits held, 2.80 available" in rig.get(second).reason_message


def test_hold_meter_settle_release(store: Store) -> None:
    rig = _rig(store)
    wid = rig.submit(gpus=2, max_runtime="1h")
    rig.step()  # scheduled, held (2 GPU x 1 h x 3.60 = 7.20), launched
    s = _statement(store, rig.clock.now())
    assert (s.held, s.available) == (Decimal("7.20"), Decimal("92.80"))
    rig.backend.start(wid)
    rig.step()
    rig.clock.advance(897.5)
    rig.backend.finish(wid)
    rig.step()
    assert rig.state(wid) == "succeeded"
    gpu_s = _gpu_seconds(store, wid, 0)
    assert gpu_s == Decimal("2") * Decimal("899.5")  # launch to end, both workers' GPUs
    s = _statement(store, rig.clock.now())
    assert (s.settled, s.held) == (Decimal("1.80"), Decimal(0))  # 1799 GPU-s x 0.001, half-even
    assert s.balance == Decimal("98.20") and s.balanced


def test_every_attempt_is_held_and_settled_on_its_own(store: Store) -> None:
    rig = _rig(store)
    wid = rig.submit(gpus=1, max_runtime="1h", max_restarts=1, restart_backoff=1,
                     restart_on=[{"exit_code": [1]}])
    rig.step()
    rig.backend.start(wid)
    rig.clock.advance(99)
    rig.backend.fail(wid)
    rig.step()  # fails: back to pending as attempt 1 (after a 1 s backoff)
    rig.step(3)
    assert rig.get(wid).attempt == 1 and rig.state(wid) in ("starting", "running")
    rig.backend.start(wid)
    rig.clock.advance(49)
    rig.backend.finish(wid)
    rig.step()
    assert rig.state(wid) == "succeeded"
    with LedgerDb(store).read() as s:
        settled = {k: s.journal.get(f"settle:{attempt_ref(wid, k)}") for k in (0, 1)}
    assert all(tx is not None for tx in settled.values())
    total = _gpu_seconds(store, wid, 0) + _gpu_seconds(store, wid, 1)
    s = _statement(store, rig.clock.now())
    charged = sum((tx.intent.amount for tx in settled.values() if tx), Decimal(0))
    assert s.settled == charged and s.held == 0
    assert abs(charged - total * Decimal("0.001")) <= Decimal("0.01")


def test_a_fresh_accounting_replays_without_charging_twice(store: Store) -> None:
    rig = _rig(store)
    wid = rig.submit(gpus=1, max_runtime="1h")
    rig.step()
    rig.backend.start(wid)
    rig.clock.advance(10)
    rig.backend.finish(wid)
    rig.step()
    before = _statement(store, rig.clock.now())
    with LedgerDb(store).read() as s:
        count = len(s.journal)
    Accounting(store).observe(rig.clock.now())  # a new leader after a crash
    with LedgerDb(store).read() as s:
        assert len(s.journal) == count
    assert _statement(store, rig.clock.now()) == before


def test_running_work_without_max_runtime_is_topped_up_each_window(store: Store) -> None:
    rig = _rig(store, window_s=60.0)
    wid = rig.submit(gpus=1)
    rig.step()
    rig.backend.start(wid)
    assert _statement(store, rig.clock.now()).held == Decimal("0.06")  # one 60 s window
    rig.clock.advance(70)
    rig.step()
    s = _statement(store, rig.clock.now())
    assert s.held >= Decimal("0.13")  # ~71 s used plus one more window
    with LedgerDb(store).read() as s2:
        assert s2.journal.get(f"topup:{attempt_ref(wid, 0)}:1") is not None


def test_work_is_stopped_when_its_top_up_cannot_be_covered(store: Store) -> None:
    rig = _rig(store, credits="0.10", window_s=60.0)
    wid = rig.submit(gpus=1)
    rig.step()
    rig.backend.start(wid)
    rig.clock.advance(70)
    rig.step()
    assert rig.get(wid).stop_reason == "Cancelled"
    assert "credits held" in rig.get(wid).stop_message
    rig.step(2)
    assert rig.state(wid) == "cancelled"
    s = _statement(store, rig.clock.now())
    assert s.held == 0 and s.balanced


def test_queues_without_credits_are_unmetered_but_their_usage_is_recorded(store: Store) -> None:
    rig = _rig(store, credits=None)
    wid = rig.submit(gpus=1, max_runtime="1h")
    rig.step()
    rig.backend.start(wid)
    rig.clock.advance(30)
    rig.backend.finish(wid)
    rig.step()
    assert rig.state(wid) == "succeeded"
    assert _gpu_seconds(store, wid, 0) > 0
    s = _statement(store, rig.clock.now())
    assert (s.settled, s.held, s.debt) == (0, 0, 0)


def test_without_enforcement_work_runs_and_its_cost_becomes_debt(store: Store) -> None:
    rig = _rig(store, credits="1.00", enforce=False)
    wid = rig.submit(gpus=1, max_runtime="2h")
    rig.step()
    assert rig.state(wid) == "starting"
    rig.backend.start(wid)
    rig.clock.advance(1999)
    rig.backend.finish(wid)
    rig.step()
    s = _statement(store, rig.clock.now())
    assert s.settled == Decimal("2.00") and s.debt == Decimal("1.00") and s.balanced


# --- preemption and fractional GPUs, through the loop -------------------------------------------


def _hold(store: Store, wid: str, attempt: int) -> Hold:
    with LedgerDb(store).read() as s:
        hold = s.journal.hold(attempt_ref(wid, attempt))
    assert hold is not None, f"{wid}@{attempt} has no hold"
    return hold


def _escrow(store: Store, hold: Hold) -> Decimal:
    with LedgerDb(store).read() as s:
        return sum((s.journal.balance(Account.hold(q, hold.workload)) for q in hold.funders),
                   Decimal(0))


def _usage(store: Store, wid: str) -> list[tuple[int, int, int, Decimal, Decimal, str]]:
    """(attempt, worker, milli, start, end, end reason) of every usage row of `wid`."""
    with store.read() as c:
        rows = LR.usage_records(c, Decimal(10**9), workload_id=wid)
    return [(u.attempt, u.worker, u.milli, u.start, u.end,
             "open" if u.end_reason is None else u.end_reason.value) for u in rows]


def _launched_at(store: Store, wid: str, attempt: int) -> Decimal:
    """When the events say the attempt was handed to the backend (its GPUs taken)."""
    with store.read() as c:
        (at,) = [e.at for e in W.list_events(c, workload_id=wid)
                 if e.kind == "transition" and e.to_state == "starting" and e.attempt == attempt]
    return Decimal(repr(at))


def test_a_preempted_attempt_pays_the_time_it_ran_and_its_requeue_is_held_anew(
        store: Store) -> None:
    rig = _rig(store)
    t0 = Decimal(repr(rig.clock.now()))
    low = [rig.submit(name=f"low{i}", gpus=4, max_runtime="1h") for i in range(2)]  # fill n0, n1
    rig.step(2)  # launched at t0, running from t0 + 1
    rig.clock.advance(997)
    high = rig.submit(name="high", gpus=4, priority=10, max_runtime="1h")
    rig.step()  # t0 + 999: the plan evicts one low job for high
    (victim,) = [w for w in low if rig.get(w).stop_reason == "Preempt"]
    (other,) = [w for w in low if w != victim]
    rig.step()  # t0 + 1000: the victim has stopped: preempted, requeued as attempt 1
    assert ("running", "preempted", "Preempt") in rig.transitions(victim)
    assert (rig.state(victim), rig.get(victim).attempt) == ("pending", 1)
    # exactly the 1000 s it held its 4 GPUs, at 0.001 per GPU-second
    assert _usage(store, victim) == [(0, 0, 4000, t0, t0 + 1000, "preempted")]
    first = _hold(store, victim, 0)
    assert (first.amount, first.open, first.charged) == (Decimal("14.40"), False, Decimal("4.00"))
    assert _escrow(store, first) == 0
    s = _statement(store, rig.clock.now())
    assert (s.settled, s.held) == (Decimal("4.00"), Decimal("28.80"))  # low1 and high still held
    assert s.available == Decimal("67.20") and s.balanced  # the other 10.40 came back
    with LedgerDb(store).read() as ls:
        assert ls.journal.hold(attempt_ref(victim, 1)) is None  # pending work holds nothing

    rig.backend.finish(other)
    rig.step(2)  # t0 + 1001: `other` ends and settles, the requeued attempt takes its GPUs
    assert rig.state(victim) == "running" and rig.get(victim).attempt == 1
    assert _launched_at(store, victim, 1) == t0 + 1001
    second = _hold(store, victim, 1)
    assert (second.amount, second.open) == (Decimal("14.40"), True)
    rig.clock.advance(498)  # t0 + 1501
    rig.backend.finish(victim)
    rig.step()
    assert rig.state(victim) == "succeeded"
    assert _usage(store, victim)[1] == (1, 0, 4000, t0 + 1001, t0 + 1501, "stopped")
    second = _hold(store, victim, 1)
    assert (second.open, second.charged) == (False, Decimal("2.00"))
    assert _hold(store, victim, 0).charged == Decimal("4.00")  # attempt 0 was not charged again
    assert _hold(store, high, 0).open


@pytest.mark.parametrize(("fields", "rows"), [
    ({"gpus": 0.5}, [(0, 500)]),
    ({"gpus": 0.25, "workers": 2}, [(0, 250), (1, 250)]),
], ids=["half-gpu", "gang-of-two-quarters"])
def test_fractional_workers_pay_exactly_their_fraction(
        store: Store, fields: dict[str, object], rows: list[tuple[int, int]]) -> None:
    rig = _rig(store)
    wid = rig.submit(max_runtime="1h", **fields)
    t0 = Decimal(repr(rig.clock.now()))
    rig.step()  # launched at t0: half a GPU in all
    assert _hold(store, wid, 0).amount == Decimal("1.80")  # 0.5 GPU x 1 h x 3.60
    rig.backend.start(wid)
    rig.step()
    rig.clock.advance(1998)  # t0 + 2000
    rig.backend.finish(wid)
    rig.step()
    assert rig.state(wid) == "succeeded"
    assert _usage(store, wid) == [(0, w, milli, t0, t0 + 2000, "stopped") for w, milli in rows]
    assert _gpu_seconds(store, wid, 0) == Decimal(1000)  # 0.5 GPU x 2000 s
    hold = _hold(store, wid, 0)
    assert (hold.open, hold.charged) == (False, Decimal("1.00"))  # half of a whole GPU's 2.00
    s = _statement(store, rig.clock.now())
    assert (s.settled, s.held, s.balance) == (Decimal("1.00"), Decimal(0), Decimal("99.00"))
