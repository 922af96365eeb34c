"""The loop's budget admission judges again only the work whose inputs changed: the pending work
of a queue whose credits moved, none when nothing changed (`corral.control.budget_admission`,
through `Accounting.refuse` on the loop's own state)."""

from __future__ import annotations

from tests.control.rig import Rig

from corral.control.accounting import Accounting
from corral.core.model import Queue, Workload
from corral.core.reasons import BUDGET_EXCEEDED
from corral.ledger import PriceRule, grant
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import pool as P
from corral.store.journal_sql import LedgerDb


def _pending(rig: Rig) -> list[Workload]:
    snap = rig.loop.live.snapshot(rig.clock.now())
    return [w for w in snap.state.workloads if not w.running]


def test_a_quiet_cycle_judges_none_and_a_grant_judges_its_queues_work(store: Store) -> None:
    accounting = Accounting(store)
    rig = Rig(store, admission=accounting)  # type: ignore[arg-type]
    with store.write() as c:
        LR.add_price(c, PriceRule.of("3.60", gpu_model="H100"), "api", 0.0)  # 0.001 / GPU-s
        P.upsert_queue(c, Queue("other", quota_gpus=8))
    with LedgerDb(store).write() as s:
        grant(s.journal, key="g1", queue="q", amount="10.00", at=0)
        grant(s.journal, key="g2", queue="other", amount="1.00", at=0)
    first = rig.submit(gpus=1, max_runtime="2h", priority=5)  # 7.20 each
    second = rig.submit(gpus=1, max_runtime="2h")
    third = rig.submit(gpus=1, max_runtime="2h", queue="other")
    rig.step(2)  # the first starts; the refusals' reasons are written to the rows
    assert rig.state(first) == "running"
    assert rig.get(second).reason_message == "queue q needs 7.20 credits held, 2.80 available"
    now = rig.clock.now()
    pending = _pending(rig)
    assert {w.id for w in pending} == {second, third}
    refused = dict(accounting.refuse(pending, now))
    assert set(refused) == {second, third}
    assert dict(accounting.refuse(pending, now)) == refused
    assert accounting.judge.judged == 0
    with LedgerDb(store).write() as s:
        grant(s.journal, key="g3", queue="q", amount="3.00", at=now)
    again = accounting.refuse(pending, now)
    assert accounting.judge.judged == 1  # q's one pending workload; other's was not judged
    assert again[second].message == "queue q needs 7.20 credits held, 5.80 available"
    assert again[third] == refused[third]
    rig.step()
    assert rig.get(second).reason_code == BUDGET_EXCEEDED
    assert rig.get(second).reason_message == "queue q needs 7.20 credits held, 5.80 available"
