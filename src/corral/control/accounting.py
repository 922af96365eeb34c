"""Accounting in the control loop: budgets in admission, holds, metering, settlement, top-ups.

`Accounting` is the loop's `Admission` (see `corral.control.admission`) and is called once more
per step, after the plan was applied and before anything is launched (`observe`):

    refuse(pending)   each eligible pending workload's expected cost must fit the credits of its
                      queue (or an ancestor), counting what work ahead of it in this cycle would
                      take; otherwise it stays pending: BudgetExceeded, with the ledger's sentence
                      "queue research needs 412.50 credits held, 96.20 available"; judged again
                      only where work, credits or prices changed (`budget_admission`)
    observe(now)      1. a hold for every attempt that holds GPUs and has none (placed work)
                      2. usage rows for attempts that were launched (exact start from the events)
                      3. settle every held attempt that ended: its usage rows are closed and its
                         real cost charged in ONE database transaction, the rest released
                      4. top up the rolling hold of running work without a max runtime
                      5. expire lapsed credit lots

Keys are derived from the workload and its attempt (`<workload>@<attempt>`): `hold:w@a`,
`settle:w@a`, `topup:w@a:<window>`. Each is posted at most once (journal + UNIQUE key), and
every step starts from what the database says, so a crash anywhere and a restart (or a new
leader) finishes the work without charging anything twice.

**Expected cost.** `max_runtime` (jobs) or `ttl` (interactive) x the price of the GPUs. Before
placement the nodes are not known, so admission prices the workload on the most expensive node it
could be placed on (an upper bound); the hold itself is priced on the nodes it got. Work with
neither limit (services, open-ended jobs) holds one rolling **window** (`ledger.window`, default
1 h) of cost; while it runs, at each new window the hold is topped up to cover what it has used
plus one more window. If nobody can cover a top-up the work is stopped (`stop_when_exhausted`,
default) or keeps running and its settlement may leave the queue in debt.

**Test-only crash point.** With `CORRAL_TEST_KILL_IN_SETTLEMENT` set to a file path (read once,
when `Accounting` is made), the process writes the attempt's ref to that file and SIGKILLs itself
in the middle of its first settlement: after the settlement's postings and its closed usage rows
were written, before they commit. The crash test uses it so that a kill lands inside a settlement
for certain (`tests/ledger_integration/test_e2e_ledger.py`). Never set it in production.

**Unmetered queues.** A queue whose funding chain (itself and its ancestors) has never received
credits is unmetered: admission never refuses its work, its attempts get a zero hold marked
`unmetered` and settle at zero. Its usage is still recorded and reported. `ledger.enforce: false`
turns budget admission off for every queue: holds are placed when they can be covered (else a
zero hold), and settlement charges the real cost, as debt where credits are short.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from sqlalchemy import Connection, func, select

from corral.control import lifecycle as L
from corral.control.attempt_usage import Closed, close_attempts, record_starts
from corral.control.budget_admission import BudgetJudge, CostKey, time_bound
from corral.control.ledger_prices import (
    Amounts,
    BilledMemo,
    Costs,
    billed_nodes,
    build_catalog,
    hold_amount,
    node_key,
    span_cost,
)
from corral.control.live_state import LiveState
from corral.control.snapshot import SpecCache
from corral.core.model import Node, WorkerAssignment, Workload
from corral.core.reasons import BUDGET_EXCEEDED, Reason
from corral.ledger import (
    Deny,
    Journal,
    LedgerInputError,
    PriceCatalog,
    PriceKey,
    PriceRule,
    WorkerStarted,
    expire_due,
    place_hold,
    rolling_top_up,
    settle,
    top_up,
    usage_cost,
)
from corral.ledger.funding import funding_chain
from corral.spec import SpecError
from corral.store import Store
from corral.store import ledger_rows as LR
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.journal_sql import LedgerDb, LedgerSession
from corral.store.ledger_tables import LedgerUsage
from corral.store.workloads import WorkloadRecord

__all__ = [
    "UNMETERED",
    "Accounting",
    "LedgerSettings",
    "accounting_from_pool",
    "attempt_ref",
    "parse_ref",
]

log = logging.getLogger(__name__)
UNMETERED = "unmetered"  # memo of a zero hold for a queue that has no credits at all
UNCOVERED = "uncovered"  # memo of a zero hold placed because the expected cost was not covered
LIVE_STATES = W.HOLDING_STATES
ZERO = Decimal(0)
#: test-only (see the module docstring): a file path; the process dies inside a settlement
KILL_IN_SETTLEMENT_ENV = "CORRAL_TEST_KILL_IN_SETTLEMENT"


@dataclass(frozen=True)
class LedgerSettings:
    enforce: bool = True
    window_s: float = 3600.0
    stop_when_exhausted: bool = True


def attempt_ref(workload_id: str, attempt: int) -> str:
    """The ledger's name of one attempt: holds, settlements and top-ups hang from it."""
    return f"{workload_id}@{attempt}"


def parse_ref(ref: str) -> tuple[str, int]:
    workload_id, _, attempt = ref.rpartition("@")
    return workload_id, int(attempt)


class Accounting:
    """The ledger's side of the control loop (see the module docstring). One per leader."""

    def __init__(self, store: Store, *, settings: LedgerSettings | None = None,
                 ledger: LedgerDb | None = None) -> None:
        self.store = store
        self.settings = settings or LedgerSettings()
        self.ledger = ledger or LedgerDb(store)
        self.specs = SpecCache()
        self.live: LiveState | None = None
        self._metered_live: set[tuple[str, int]] | None = None  # attempts with usage rows
        # the usage rows this process wrote and has not closed, by attempt: settling reads
        # none of them back (`close_attempts`' `known`)
        self._rows: dict[tuple[str, int], tuple[WorkerStarted, ...]] = {}
        self._held: set[tuple[str, int]] = set()  # live attempts known to have a hold
        self._open: set[tuple[str, int]] | None = None  # attempts whose hold is open
        self._topup_due: dict[tuple[str, int], float] = {}  # next moment a top-up may be due
        self._catalog_memo: tuple[object, PriceCatalog] | None = None
        self._keys_memo: tuple[int, dict[str, set[PriceKey]]] | None = None  # by nodes_version
        self.judge = BudgetJudge(self._cost_key)  # admission's verdicts, kept between cycles
        self._runtimes: dict[float | None, Decimal] = {}  # `_runtime` by spec limit
        self._billed: BilledMemo = {}  # the nodes `reprice` returned last, kept between cycles
        self._observed = -1  # the loop state's generation at the last full observe
        self._kill_marker = os.environ.get(KILL_IN_SETTLEMENT_ENV) or None

    def checkpoint(self) -> None:
        """Save the ledger's checkpoint now (the loop's planned stop, `ControlLoop.stop`)."""
        self.ledger.checkpoint()

    def attach(self, live: LiveState) -> None:
        """Read the control loop's in-memory state (`corral.control.live_state`) instead of the
        store: active workloads, their placements and the nodes, kept current by the loop."""
        self.live = live
        self.specs = live.specs

    # -- admission -----------------------------------------------------------------------------

    def reprice(self, nodes: Sequence[Node], now: float) -> tuple[Node, ...]:
        """`nodes` at the price the ledger bills now (`ledger_prices.billed_nodes`), so that
        placement and price caps see what billing charges: one price source."""
        with self.ledger.read() as s:
            catalog = self._catalog(s.conn, None if self.live is None else self.live.nodes)
        return billed_nodes(nodes, catalog, now, self._billed)

    def refuse(self, pending: Sequence[Workload], now: float) -> Mapping[str, Reason]:
        """BudgetExceeded for pending work whose expected cost its queue cannot hold; only the
        funding groups whose work or credits changed are judged again (`budget_admission`)."""
        if not self.settings.enforce or not pending:
            return {}
        with self.ledger.read() as s:
            records, all_nodes, active = self._records_and_nodes(s.conn)
            catalog = self._catalog(s.conn, all_nodes)
            keys_by_model = self._keys_by_model(all_nodes, active)
            at = Decimal(repr(float(now)))
            world = (catalog.rules, keys_by_model, time_bound(catalog, at))
            journal = s.journal
            return self.judge.refuse(
                pending, records, journal, at, world,
                lambda w, key: self._estimate(journal, w, key, keys_by_model, catalog, at))

    def _keys_by_model(self, all_nodes: Mapping[str, Node], active: Mapping[str, Node]
                       ) -> dict[str, set[PriceKey]]:
        """Every schedulable active node's price key, per GPU model; with the loop's state,
        collected again only when a node changed."""
        version = None if self.live is None else self.live.nodes_version
        if version is not None and self._keys_memo is not None and self._keys_memo[0] == version:
            return self._keys_memo[1]
        keys: dict[str, set[PriceKey]] = {}
        for n in all_nodes.values():
            if n.gpu_count > 0 and n.schedulable and n.id in active:
                keys.setdefault(n.gpu_model, set()).add(node_key(n))
        self._keys_memo = None if version is None else (version, keys)
        return keys

    def _cost_key(self, w: Workload, rec: WorkloadRecord) -> CostKey:
        return (w.total_milli(), tuple(w.gpu_models), self._runtime(rec))

    def _estimate(self, journal: Journal, w: Workload, key: CostKey,
                  keys_by_model: Mapping[str, set[PriceKey]], catalog: PriceCatalog,
                  start: Decimal) -> Decimal:
        """The most `w` could cost: its runtime limit on the dearest node it could get."""
        milli, models, seconds = key
        keys = set().union(*(keys_by_model.get(m, ()) for m in models or tuple(keys_by_model)))
        if milli <= 0 or not keys:
            return Decimal(0)
        worst = max(catalog.cost(k, milli, start, start + seconds) for k in keys)
        return journal.currency.hold(worst)

    def _records_and_nodes(self, conn: Connection) -> tuple[
            Mapping[str, WorkloadRecord], Mapping[str, Node], Mapping[str, Node]]:
        """Active workloads, every node (inactive ones too) and the active nodes: the loop's
        (`attach`), else read from the store."""
        if self.live is not None and self.live.loaded:
            return self.live.records, self.live.nodes, self.live.active_nodes
        records = {r.id: r for r in W.load_active(conn)}
        nodes = {n.id: n for n in P.list_nodes(conn, include_inactive=True)}
        return records, nodes, {n.id: n for n in P.list_nodes(conn)}

    # -- after the plan ------------------------------------------------------------------------

    def observe(self, now: float) -> None:
        """Holds, usage, settlements, top-ups, expiry (see the module docstring). Idempotent.

        Costs what changed: holds are looked for only on attempts not seen before, usage rows
        written only for attempts not yet metered (after a restart, read once from the store),
        settlements made only for attempts that left the live set, top-ups checked only when
        due; and no write transaction is opened when none of these has work."""
        with self.store.read() as conn:
            records, nodes, _ = self._records_and_nodes(conn)
            if self._metered_live is None or self._open is None:
                started = _metered_attempts(conn)
                self._metered_live = set(started)
                self._first_windows(started)
                with self.ledger.read() as s:
                    self._open = {parse_ref(h.workload) for h in s.journal.holds(open_only=True)}
                    self._held = set(self._open)
        if self.live is None:
            self.specs.retain(set(records))
        elif self._quiet(now):
            return
        live = {(r.id, r.attempt): r for r in records.values() if r.state in LIVE_STATES}
        self._write_changes(live, nodes, now)
        self._top_up(live, now)
        self._expire(now)
        if self.live is not None:
            self._observed = self.live.generation

    def _quiet(self, now: float) -> bool:
        """Nothing to do: the loop's state is the one last observed, no top-up is due, and no
        credit lot lapses. Only then is the rest skipped (a cycle of an idle pool)."""
        assert self.live is not None
        if self._observed != self.live.generation:
            return False
        if min(self._topup_due.values(), default=math.inf) <= now:
            return False
        self._expire(now)
        return True

    def _write_changes(self, live: Mapping[tuple[str, int], WorkloadRecord],
                       nodes: Mapping[str, Node], now: float) -> None:
        """Holds for newly placed attempts, usage rows for launched ones, settlements for ended
        ones: ONE database transaction for all three (a step that ends 10,000 jobs and places
        10,000 commits once, not three times), and none when none has work. Memory follows
        only once it committed."""
        assert self._metered_live is not None and self._open is not None
        unseen = {k: r for k, r in live.items() if k not in self._held}
        # newly placed work left pending: admission need not keep its pending form
        self.judge.forget((wid, r.queue) for (wid, _), r in unseen.items())
        holds = self._holds_todo(unseen)
        launched = {k: r for k, r in live.items()
                    if r.state in ("starting", "running") and k not in self._metered_live}
        ended = sorted(self._open - live.keys())
        if holds or launched or ended:
            at = Decimal(repr(float(now)))
            written: dict[tuple[str, int], tuple[WorkerStarted, ...]] = {}
            with self.ledger.write() as s:
                catalog = self._catalog(s.conn, nodes)
                placed = self._assignments(s.conn, [*holds, *launched])
                self._place_holds(s, holds, placed, nodes, catalog, at)
                started = (record_starts(s.conn, launched, placed, nodes, written)
                           if launched else {})
                self._settle_ended(s, ended, nodes, catalog, at)
            self._held |= holds.keys()
            self._open |= holds.keys()
            self._metered_live |= set(started)
            self._rows.update(written)
            self._first_windows(started)
            self._open -= set(ended)
            self._held -= set(ended)
            for key in ended:
                self._topup_due.pop(key, None)
                self._rows.pop(key, None)
        if len(self._metered_live) > 2 * len(live) + 1000:  # forget ended attempts, now and then
            self._metered_live &= set(live)
            self._rows = {k: v for k, v in self._rows.items() if k in live}

    def _holds_todo(self, unseen: Mapping[tuple[str, int], WorkloadRecord]
                    ) -> dict[tuple[str, int], WorkloadRecord]:
        """The attempts among `unseen` that have no hold yet (those that have one are noted)."""
        if not unseen:
            return {}
        todo = {}
        with self.ledger.read() as s:
            for k, r in unseen.items():
                if not s.journal.had_hold(attempt_ref(*k)):
                    todo[k] = r
                else:
                    self._held.add(k)
        return todo

    def _place_holds(self, s: LedgerSession, todo: Mapping[tuple[str, int], WorkloadRecord],
                     placed: Mapping[tuple[str, int], Sequence[WorkerAssignment]],
                     nodes: Mapping[str, Node], catalog: PriceCatalog, at: Decimal) -> None:
        """A hold for each attempt of `todo`, priced on the nodes it got (in the caller's
        transaction)."""
        metered: dict[str, bool] = {}  # by queue: asked once per queue, not per attempt
        costs: Costs = {}  # every hold here starts at `at`: priced once per node class
        amounts: Amounts = {}  # and rounded once per shape (runtime, price keys and sizes)
        for key, rec in todo.items():
            ref = attempt_ref(*key)
            if s.journal.had_hold(ref):
                continue
            if rec.queue not in metered:
                metered[rec.queue] = self._metered(s.journal, rec.queue)
            if not metered[rec.queue]:
                place_hold(s.journal, workload=ref, queue=rec.queue, amount=0, at=at,
                           memo=UNMETERED)
                continue
            amount = hold_amount(s.journal, catalog, placed.get(key, ()), nodes, at,
                                  self._runtime(rec), costs, amounts)
            if not place_hold(s.journal, workload=ref, queue=rec.queue, amount=amount,
                              at=at).ok:
                # Admission counted it, so only a concurrent transfer gets here: run it on
                # a zero hold and charge it in full at settlement (debt if need be).
                log.warning("hold of %s for %s not covered; placing a zero hold", amount, ref)
                place_hold(s.journal, workload=ref, queue=rec.queue, amount=0, at=at,
                           memo=UNCOVERED)

    def _assignments(self, conn: Connection, keys: Sequence[tuple[str, int]]
                     ) -> Mapping[tuple[str, int], Sequence[WorkerAssignment]]:
        if not keys:
            return {}
        if self.live is not None and self.live.loaded:
            return {k: self.live.assignments.get(k[0], ()) for k in keys}
        return W.assignments_of(conn, keys)

    def _settle_ended(self, s: LedgerSession, ended: Sequence[tuple[str, int]],
                      nodes: Mapping[str, Node], catalog: PriceCatalog, now: Decimal) -> None:
        """Settle every open hold among `ended` (attempts no longer live): their usage rows
        closed and their holds settled in the caller's transaction, a few bulk statements per
        500."""
        if not ended:
            return
        todo = []
        for key in ended:
            if s.journal.open_hold(attempt_ref(*key)) is not None:
                todo.append(key)
        closed = close_attempts(s.conn, todo, nodes, now, self._rows)
        # each settlement reads its hold's memo: one read of that column for all (holds
        # placed before the ledger's checkpoint are in the database only)
        memos = s.memos(f"hold:{attempt_ref(*key)}" for key in todo)
        costs: Costs = {}  # work launched in one step and ended in one shares its span
        for key in todo:
            if key in closed:
                unmetered = memos.get(f"hold:{attempt_ref(*key)}") == UNMETERED
                self._settle_one(s, key, closed[key], now, catalog, unmetered, costs)

    def _settle_one(self, s: LedgerSession, key: tuple[str, int], closed: Closed, now: Decimal,
                    catalog: PriceCatalog, unmetered: bool, costs: Costs) -> None:
        """Settle one attempt's hold at its real cost (in the caller's transaction)."""
        ref = attempt_ref(*key)
        at = closed.span.end if closed.span.end is not None else now
        if unmetered:
            cost = Fraction(0)  # not priced at all: an unmetered queue is never charged
        elif len(closed.usage) == 1:  # one worker (most work): its cost, no sum to start
            u = closed.usage[0]
            cost = span_cost(catalog, u.price_key, u.milli, u.start, u.end, costs)
        else:
            cost = sum((span_cost(catalog, u.price_key, u.milli, u.start, u.end, costs)
                        for u in closed.usage), Fraction(0))
        settle(s.journal, workload=ref, cost=cost, at=at)
        self._crash_point(s, ref)

    def _crash_point(self, s: LedgerSession, ref: str) -> None:
        """Test-only: die here, with this settlement written but not committed (see above)."""
        if self._kill_marker is None:
            return
        s.flush()  # the journal writes in bulk at commit: write it now, so the kill lands after
        Path(self._kill_marker).write_text(ref)
        os.kill(os.getpid(), signal.SIGKILL)

    def _first_windows(self, started: Mapping[tuple[str, int], Decimal | float]) -> None:
        """A rolling hold is first topped up one window after its attempt started."""
        for key, start in started.items():
            self._topup_due.setdefault(key, float(start) + self.settings.window_s)

    def _top_up(self, live: Mapping[tuple[str, int], WorkloadRecord], now: float) -> None:
        """Top up running work without a limit whose next window has begun. Each attempt is
        looked at when its next window is due (`_topup_due`), not every cycle."""
        window = Decimal(repr(float(self.settings.window_s)))
        at = Decimal(repr(float(now)))
        for key, rec in live.items():
            if rec.state != "running" or now < self._topup_due.get(key, -math.inf):
                continue
            if self._limit(rec) is not None:
                self._topup_due[key] = math.inf
                continue
            self._topup_due[key] = self._top_up_one(key, rec, window, at)

    def _top_up_one(self, key: tuple[str, int], rec: WorkloadRecord, window: Decimal,
                    at: Decimal) -> float:
        """Top up if due; returns when to look again (inf: never, for this attempt)."""
        ref = attempt_ref(*key)
        with self.ledger.read() as s:
            hold = s.journal.open_hold(ref)
            tx = s.journal.get(f"hold:{ref}")
            if hold is None or not hold.open or tx is None or tx.memo == UNMETERED:
                return math.inf if tx is not None and tx.memo == UNMETERED else float(at)
            usage = LR.usage_records(s.conn, at, workload_id=key[0], attempt=key[1])
            if not usage:
                return float(at)  # not metered yet: look again next cycle
            first = min(u.start for u in usage)
            index = math.floor((at - first) / window)
            due = float(first + window * (index + 1))
            if index < 1 or s.journal.get(f"topup:{ref}:{index}") is not None:
                return due
        with self.ledger.write() as s:
            topup_key = f"topup:{ref}:{index}"
            if s.journal.get(topup_key) is not None:
                return due
            catalog = self._catalog(s.conn, None)
            accrued = sum((usage_cost(u, catalog) for u in usage), Fraction(0))
            ahead = sum((catalog.cost(u.price_key, u.milli, at, at + window) for u in usage),
                        Fraction(0))
            more = rolling_top_up(s.journal, ref, accrued, ahead)
            if more <= 0:
                return due
            result = top_up(s.journal, workload=ref, amount=more, at=at, key=topup_key)
            if isinstance(result, Deny):
                self._exhausted(s.conn, rec, result, at)
        return due

    def _expire(self, now: float) -> None:
        """Expire lapsed credit lots; a write transaction only when one is due."""
        at = Decimal(repr(float(now)))
        with self.ledger.read() as s:
            due = any(lot.lapsed(at) and s.journal.balance(lot.account) > 0
                      for q in s.journal.chart.queues for lot in s.journal.lots(q))
        if due:
            with self.ledger.write() as s:
                expire_due(s.journal, at)

    def _exhausted(self, conn: Connection, rec: WorkloadRecord, deny: Deny, at: Decimal) -> None:
        message = f"the ledger cannot extend its hold: {deny.message}"
        if not self.settings.stop_when_exhausted or rec.stop_reason is not None:
            W.append_event(conn, at=float(at), kind="info", reason=BUDGET_EXCEEDED,
                           message=message, workload_id=rec.id, attempt=rec.attempt)
            return
        if W.update_versioned(conn, rec.id, rec.version, stop_reason=L.CANCELLED,
                              stop_message=f"stopped: {message}"):
            W.append_event(conn, at=float(at), kind="info", reason=BUDGET_EXCEEDED,
                           message=f"stopping: {message}", workload_id=rec.id,
                           attempt=rec.attempt)

    # -- pieces --------------------------------------------------------------------------------

    def _catalog(self, conn: Connection, nodes: Mapping[str, Node] | None) -> PriceCatalog:
        """The price catalog, rebuilt only when the price rules or the nodes changed."""
        rules = [p.rule for p in LR.list_prices(conn)]
        if nodes is None or self.live is None:
            listed = P.list_nodes(conn, include_inactive=True)
            version: object = tuple(listed)
        else:
            listed, version = list(nodes.values()), self.live.nodes_version
        key = (tuple(rules), version)
        if self._catalog_memo is None or self._catalog_memo[0] != key:
            self._catalog_memo = (key, build_catalog(rules, listed))
        return self._catalog_memo[1]

    def _metered(self, journal: Journal, queue: str) -> bool:
        """Whether any queue that may pay for `queue` has ever received credits."""
        if queue not in journal.chart:
            return False
        return any(journal.lots(q) for q in funding_chain(journal, queue))

    def _limit(self, rec: WorkloadRecord) -> float | None:
        spec = self.specs.spec(rec)
        return spec.max_runtime if spec.max_runtime is not None else spec.ttl

    def _runtime(self, rec: WorkloadRecord) -> Decimal:
        limit = self._limit(rec)
        seconds = self._runtimes.get(limit)  # a few distinct limits among 100,000s of records
        if seconds is None:
            seconds = self._runtimes[limit] = Decimal(
                repr(float(limit if limit is not None else self.settings.window_s)))
        return seconds


def _metered_attempts(conn: Connection) -> dict[tuple[str, int], float]:
    """Attempts whose usage rows are written and still open, with their start (read once, when
    a leader starts)."""
    q = (select(LedgerUsage.workload_id, LedgerUsage.attempt, func.min(LedgerUsage.start_s))
         .where(LedgerUsage.end.is_(None))
         .group_by(LedgerUsage.workload_id, LedgerUsage.attempt))
    return {(w, int(a)): float(start) for w, a, start in conn.execute(q)}


def accounting_from_pool(store: Store, spec: object, now: float) -> Accounting:
    """The loop's Accounting for a pool file (a `corral.spec.PoolSpec`, or None for defaults):
    its `ledger:` settings, and its `prices:` made the current pool prices of the store.

    Raises SpecError when the prices cannot form a catalog (two overlap for the same pattern)."""
    ledger_spec = getattr(spec, "ledger", None)
    settings = LedgerSettings() if ledger_spec is None else LedgerSettings(
        enforce=ledger_spec.enforce, window_s=ledger_spec.window,
        stop_when_exhausted=ledger_spec.stop_when_exhausted)
    rules = [PriceRule.of(p.price_per_gpu_hour, provider=p.provider, region=p.region,
                          gpu_model=p.gpu_model, capacity_kind=p.capacity_kind,
                          valid_from=p.valid_from_s, valid_until=p.valid_until_s)
             for p in getattr(spec, "prices", ())]
    with store.write() as conn:
        LR.replace_pool_prices(conn, rules, now)
        try:
            build_catalog([p.rule for p in LR.list_prices(conn)], P.list_nodes(conn))
        except LedgerInputError as e:
            raise SpecError([(e.field, f"{e.problem}; {e.fix}")]) from None
    return Accounting(store, settings=settings)
