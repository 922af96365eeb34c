"""The ledger in the control loop, on a fake backend and a manual clock, on both databases:
admission with the ledger's sentence, holds, exact metering, settlement per attempt, rolling
top-ups, unmetered queues, `enforce: false`, and replays that charge nothing twice."""

from __future__ import annotations

from decimal import Decimal

from tests.control.rig import Rig

from corral.control.accounting import Accounting, LedgerSettings, attempt_ref
from corral.core.reasons import BUDGET_EXCEEDED
from corral.ledger import PriceRule, Statement, grant, statement
from corral.store import Store
from corral.store import ledger_rows as LR
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
    wid = rig.submit(gpus=1, max_runtime="1h", max_restarts=1, restart_backoff=1)
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
