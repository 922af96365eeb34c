"""Budget admission judged again only where an input changed (`corral.control.budget_admission`).

The reference is the pass the loop ran before it was incremental: every pending workload in
priority order through one `Budget`. The judge must give the same verdicts, word for word, after
any sequence of arrivals, departures, changed work, grants, holds, lapses and price changes,
while judging no workload when nothing changed."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
from tests.builders import job
from tests.ledger.builders import journal as make_journal

from corral.control.budget_admission import Budget, BudgetJudge, CostKey
from corral.core.model import Workload
from corral.core.reasons import Reason
from corral.ledger import Journal, grant, place_hold


@dataclass(frozen=True)
class Rec:
    """What the judge reads of a workload's record: its runtime limit (seconds)."""
    runtime: int


def cost_key(w: Workload, rec: Rec) -> CostKey:
    return (w.total_milli(), tuple(w.gpu_models), Decimal(rec.runtime))


def priced(rate: Decimal) -> Callable[[Workload, CostKey], Decimal]:
    def cost(w: Workload, key: CostKey) -> Decimal:
        milli, _, seconds = key
        return Decimal(milli) * seconds * rate / 1000
    return cost


def reference(pending: Sequence[Workload], records: Mapping[str, Rec], journal: Journal,
              at: Decimal, rate: Decimal) -> dict[str, Reason]:
    """The whole pass, as `Accounting.refuse` ran it before (one Budget, all pending work)."""
    budget, out, cost = Budget(journal, at), {}, priced(rate)
    for w in sorted(pending, key=lambda w: (-w.priority, w.submitted_at, w.id)):
        rec = records.get(w.id)
        metered = w.queue in journal.chart and any(
            journal.lots(q) for q in budget.chain(w.queue))
        if rec is None or not metered:
            continue
        refusal = budget.reserve(w.queue, cost(w, cost_key(w, rec)))  # type: ignore[arg-type]
        if refusal is not None:
            out[w.id] = refusal
    return out


class World:
    """A judge, its journal and the pending work, stepped by hand."""

    def __init__(self, *queues: str, draw_from_ancestors: bool = True) -> None:
        self.journal = make_journal(*queues, draw_from_ancestors=draw_from_ancestors)
        self.judge = BudgetJudge(cost_key)  # type: ignore[arg-type]
        self.pending: dict[str, Workload] = {}
        self.records: dict[str, Rec] = {}
        self.at, self.rate, self.n = Decimal(1), Decimal(1), 0

    def submit(self, queue: str, gpus: int = 1, priority: int = 0, runtime: int = 10) -> str:
        self.n += 1
        wid = f"w{self.n:04d}"
        w = job(wid).queue(queue).gpus(gpus).priority(priority).submitted(float(self.n)).build()
        self.pending[wid], self.records[wid] = w, Rec(runtime)
        return wid

    def refuse(self) -> dict[str, Reason]:
        got = dict(self.judge.refuse(list(self.pending.values()), self.records,  # type: ignore[arg-type]
                                     self.journal, self.at, (self.rate,), priced(self.rate)))
        want = reference(list(self.pending.values()), self.records, self.journal, self.at,
                         self.rate)
        assert got == want
        return got


def test_a_quiet_step_judges_none_and_keeps_its_verdicts() -> None:
    world = World("a", "b")
    grant(world.journal, key="ga", queue="a", amount="30", at=0)
    grant(world.journal, key="gb", queue="b", amount="5", at=0)
    for _ in range(3):
        world.submit("a")
        world.submit("b")
    first = world.refuse()
    assert world.judge.judged == 6 and len(first) == 3  # b: 10 each, 5 available
    assert world.refuse() == first
    assert world.judge.judged == 0


def test_a_balance_change_judges_that_queues_work_again_with_true_reasons() -> None:
    world = World("a", "b")
    grant(world.journal, key="ga", queue="a", amount="15", at=0)
    grant(world.journal, key="gb", queue="b", amount="5", at=0)
    a1, a2 = world.submit("a", priority=1), world.submit("a")
    world.submit("b")
    before = world.refuse()
    assert set(before) == {a2, *[w for w in world.pending if world.pending[w].queue == "b"]}
    assert before[a2].message == ("queue a needs 10.00 credits held, 5.00 available "
                                  "(10.00 promised to work ahead of it in this cycle)")
    grant(world.journal, key="ga2", queue="a", amount="3", at=1)  # a: 18, b unchanged
    after = world.refuse()
    assert world.judge.judged == 2  # a's two workloads; b's one was not judged
    assert after[a2].message == ("queue a needs 10.00 credits held, 8.00 available "
                                 "(10.00 promised to work ahead of it in this cycle)")
    grant(world.journal, key="ga3", queue="a", amount="2", at=1)  # a: 20, enough for both
    assert set(world.refuse()) == set(before) - {a2}
    place_hold(world.journal, workload="elsewhere", queue="a", amount="12", at=1)  # a: 8
    again = world.refuse()
    assert world.judge.judged == 2
    assert again[a1].message == "queue a needs 10.00 credits held, 8.00 available"
    assert again[a2].message == "queue a needs 10.00 credits held, 8.00 available"


def test_when_every_queue_can_pay_for_its_own_work_a_credit_change_judges_none() -> None:
    world = World("a", "b")
    grant(world.journal, key="ga", queue="a", amount="1000", at=0)
    grant(world.journal, key="gb", queue="b", amount="1000", at=0)
    for i in range(4):
        world.submit("ab"[i % 2])
    assert world.refuse() == {}
    place_hold(world.journal, workload="x", queue="a", amount="100", at=1)
    world.submit("b")  # arrivals are priced on entry: the demand stays whole
    assert world.refuse() == {}
    assert world.judge.judged == 0
    place_hold(world.journal, workload="y", queue="a", amount="885", at=1)  # a: 15 left, needs 20
    assert len(world.refuse()) == 1 and world.judge.judged == 2
    del world.pending[min(w for w in world.pending if world.pending[w].queue == "a")]
    assert world.refuse() == {} and world.judge.judged == 0  # the departure left the demand
    place_hold(world.journal, workload="z", queue="a", amount="5", at=1)  # 10 for 10
    assert world.refuse() == {} and world.judge.judged == 0


def test_a_lapsed_lot_and_a_price_change_are_seen_without_any_other_change() -> None:
    world = World("a")
    grant(world.journal, key="g", queue="a", amount="30", at=0, expires_at=100)
    grant(world.journal, key="g2", queue="a", amount="10", at=0)
    wid = world.submit("a", runtime=20)
    assert world.refuse() == {}
    world.at = Decimal(100)  # the 30 lapsed: 10 left for 20
    assert set(world.refuse()) == {wid}
    world.rate = Decimal("0.5")  # 10 for 10
    assert world.refuse() == {}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ancestors", [True, False], ids=["ancestors", "own"])
def test_random_histories_give_the_whole_passs_verdicts(seed: int, ancestors: bool) -> None:
    """Arrivals, departures, changed work, grants, holds, lapses, price changes, a queue
    funded late and work of queues the ledger does not know, in random order."""
    rng = random.Random(seed)
    world = World("org", "a<org", "b<org", "c", "d", draw_from_ancestors=ancestors)
    queues = ["org", "a", "b", "c", "d", "nowhere"]
    for i, q in enumerate(["org", "a", "c"]):
        grant(world.journal, key=f"g{i}", queue=q, amount=str(rng.randint(20, 80)), at=0,
              expires_at=rng.choice([None, 40, 90]))
    judged_quiet = []
    for step in range(60):
        for _ in range(rng.randint(0, 6)):
            world.submit(rng.choice(queues), gpus=rng.randint(0, 3),
                         priority=rng.randint(0, 2), runtime=rng.choice([5, 10, 30]))
        for wid in rng.sample(sorted(world.pending), min(len(world.pending), rng.randint(0, 3))):
            if rng.random() < 0.5:
                del world.pending[wid]
            else:  # the same workload, changed: a new core form, a new record, or both
                change = rng.choice(["work", "record", "both"])
                if change != "record":
                    world.pending[wid] = replace(world.pending[wid], priority=rng.randint(0, 2))
                if change != "work":
                    world.records[wid] = Rec(rng.choice([5, 10, 30]))
        if rng.random() < 0.3:  # placed (Accounting.observe): dropped; some stay pending
            placed = rng.sample(sorted(world.pending), min(len(world.pending), 3))
            world.judge.forget((wid, world.pending[wid].queue) for wid in placed)
            for wid in placed[:rng.randint(0, len(placed))]:
                del world.pending[wid]
        roll = rng.random()
        if roll < 0.2:
            grant(world.journal, key=f"s{step}", queue=rng.choice(queues[:5]),
                  amount=str(rng.randint(5, 40)), at=world.at)
        elif roll < 0.35:
            q = rng.choice(["org", "a", "c"])
            place_hold(world.journal, workload=f"h{step}", queue=q,
                       amount=str(rng.randint(1, 10)), at=world.at)
        elif roll < 0.45:
            world.rate = rng.choice([Decimal(1), Decimal("0.5"), Decimal(2)])
        world.at += rng.choice([0, 1, 10])
        world.refuse()
        world.refuse()  # nothing changed in between
        judged_quiet.append(world.judge.judged)
    assert set(judged_quiet) == {0}


class _Looked(dict[str, object]):
    """A group's entries that count how often they are asked whether they hold a workload."""
    asked = 0

    def __contains__(self, key: object) -> bool:
        _Looked.asked += 1
        return super().__contains__(key)


def test_work_that_leaves_is_found_through_its_queue_not_by_asking_every_group() -> None:
    """A leader's first observe forgets every running attempt, and cancelled work leaves at
    the next call: each is looked up once, in its queue's group, however many groups there are
    (asking every group: 200 x 100 looks, and 200 x 50)."""
    queues = [f"q{i:03d}" for i in range(200)]
    world = World(*queues)
    for i, q in enumerate(queues):
        grant(world.journal, key=f"g{i}", queue=q, amount="5", at=0)
        world.submit(q, gpus=1, runtime=10)  # 10 each, 5 available: refused
    assert len(world.refuse()) == 200
    world.judge._members = {g: _Looked(m) for g, m in world.judge._members.items()}
    _Looked.asked = 0
    placed = sorted(world.pending)[1::2]  # every other queue's: the groups stay
    world.judge.forget((wid, world.pending[wid].queue) for wid in placed)
    assert _Looked.asked == 100
    for wid in placed:
        del world.pending[wid]
    for wid in sorted(world.pending)[:50]:  # cancelled: they leave without `forget`
        del world.pending[wid]
    _Looked.asked = 0
    assert len(world.refuse()) == 50
    assert _Looked.asked == 50
