"""The double-entry journal: accepts balanced transactions once per key, keeps balances.

`Journal.post` is the only way money moves. It checks a transaction, appends it to the
`JournalStore` and updates the derived state (balances, lots, holds), which is a pure function of
the transactions in order: `Journal(chart, store=s)` over an existing store rebuilds the same state.

What `post` guarantees (and the Hypothesis properties in tests/ledger check):

- every accepted transaction sums to exactly zero, so the sum of all postings is always zero;
- amounts are exact at the currency's places (no rounding inside the journal);
- one transaction per idempotency key: a replay with the same body returns the original and
  changes nothing; a different body under a used key raises `IdempotencyConflictError`;
- credit lots never go below zero (only a queue's overdraft account may), holds never go below
  zero, and a settlement leaves its hold at exactly zero;
- a workload has at most one hold, settled at most once. (A zero hold, for free capacity, is a
  HOLD transaction without postings, and its settlement may have none either.)

The operations that build transactions (grants, transfers, holds, settlements, expiry) are in
`corral.ledger.credits` and `corral.ledger.holds`; reading balances for people is in
`corral.ledger.statements`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from corral.ledger.accounts import Account, AccountKind, QueueChart
from corral.ledger.entries import Hold, Intent, Lot, Posting, Transaction, TxKind
from corral.ledger.errors import (
    HoldStateError,
    IdempotencyConflictError,
    UnbalancedTransactionError,
)
from corral.ledger.money import DEFAULT_CURRENCY, Currency
from corral.ledger.storage import InMemoryJournalStore, JournalStore

__all__ = ["Journal", "JournalState"]

ZERO = Decimal(0)


@dataclass(frozen=True)
class JournalState:
    """The journal's derived state after a prefix of its transactions (`Journal.state`).

    A checkpoint saves it so that a rebuild replays only the transactions after it, as a
    database recovers from a checkpoint and the log after it instead of the whole log.
    `Journal(chart, state=s, store=rest)` equals the journal that replayed everything (a
    property test in tests/ledger_integration checks it after random histories). The accounts
    of each queue and its lots in draw-down order are derived from `balances` and `lots`.

    lots: in the order they were opened. holds: the open ones, in the order they were placed.
    settled: the workloads whose hold was settled: only their names (a workload has one hold,
    ever), not the holds, their draws or their hold accounts, which a settlement leaves at
    zero and drops (`Journal.hold` reads a settled hold back from the transactions).
    """

    balances: Mapping[Account, Decimal]
    lots: tuple[Lot, ...]
    holds: tuple[Hold, ...]
    swept: frozenset[Account]
    transfers: Mapping[tuple[str, bool], Decimal]
    settled: frozenset[str] = frozenset()


class Journal:
    """Balances, lots and holds of one ledger, derived from its store's transactions.

    draw_from_ancestors: when a queue lacks the credits for a hold or top-up, whether the
    nearest ancestor that has them may pay instead (see `corral.ledger.funding`).
    """

    def __init__(
        self,
        chart: QueueChart,
        *,
        currency: Currency = DEFAULT_CURRENCY,
        store: JournalStore | None = None,
        draw_from_ancestors: bool = True,
        state: JournalState | None = None,
    ) -> None:
        self.chart = chart
        self.currency = currency
        self.draw_from_ancestors = draw_from_ancestors
        self._store: JournalStore = InMemoryJournalStore() if store is None else store
        self._balances: dict[Account, Decimal] = {}
        self._lots: dict[Account, Lot] = {}
        self._lots_by_queue: dict[str, list[Lot]] = {}
        # each queue's lots in draw-down order, kept until a lot of it opens: every hold and
        # admission check reads them, and they change only with a grant or a transfer
        self._lots_sorted: dict[str, tuple[Lot, ...]] = {}
        self._accounts_by_queue: dict[str, set[Account]] = {}
        self._holds: dict[str, Hold] = {}  # the open ones
        # the workloads whose hold was settled: the hold and its zero-balance accounts are
        # dropped at settlement (memory that grew with every hold ever placed); the name stays,
        # for "one hold per workload, ever"
        self._settled: set[str] = set()
        self._swept: set[Account] = set()
        self._transfers: dict[tuple[str, bool], Decimal] = {}
        if state is not None:  # the store then holds only what came after it
            self._restore(state)
        for tx in self._store:
            self._check(tx)
            self._apply(tx)

    # -- writing -------------------------------------------------------------------------------

    def post(self, tx: Transaction) -> Transaction:
        """Accept `tx` once. Returns the stored transaction (the original one on a replay)."""
        existing = self._store.get(tx.key)
        if existing is not None:
            if existing.same_body(tx):
                return existing
            raise IdempotencyConflictError(
                f"key {tx.key!r} was already used for: {existing.intent.describe()}; "
                f"refusing a different transaction ({tx.intent.describe()}) under it"
            )
        self._check(tx)
        self._store.append(tx)
        self._apply(tx)
        return tx

    def replay(self, key: str, intent: Intent) -> Transaction | None:
        """The transaction already posted under `key` for the same `intent`, or None if the key
        is new. Operations call this first, so that a retried operation is a no-op even when its
        postings could no longer be computed (a settled hold, a drained lot).

        Raises IdempotencyConflictError when the key was used for a different intent.
        """
        existing = self._store.get(key)
        if existing is None:
            return None
        if existing.intent != intent:
            raise IdempotencyConflictError(
                f"key {key!r} was already used for: {existing.intent.describe()}; "
                f"refusing a different operation ({intent.describe()}) under it"
            )
        return existing

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> Transaction | None:
        return self._store.get(key)

    def transactions(self) -> Iterator[Transaction]:
        """Every accepted transaction, in the order it was posted."""
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def balance(self, account: Account) -> Decimal:
        return self._balances.get(account, ZERO)

    def accounts(self, queue: str) -> tuple[Account, ...]:
        """Every account of `queue` that has ever been posted to, sorted."""
        return tuple(sorted(self._accounts_by_queue.get(queue, ())))

    def lots(self, queue: str) -> tuple[Lot, ...]:
        """The queue's credit lots in draw-down order (soonest expiry first, then opening order)."""
        cached = self._lots_sorted.get(queue)
        if cached is not None:
            return cached
        lots = self._lots_by_queue.get(queue, [])
        order = {lot.account: i for i, lot in enumerate(lots)}
        cached = self._lots_sorted[queue] = tuple(
            sorted(
                lots,
                key=lambda lot: (
                    lot.expires_at is None,
                    lot.expires_at if lot.expires_at is not None else ZERO,
                    order[lot.account],
                ),
            )
        )
        return cached

    def lot(self, account: Account) -> Lot | None:
        return self._lots.get(account)

    def swept(self, account: Account) -> bool:
        """Whether a lot has been expired by `expire_due`; a swept lot never takes credits again
        (even from an operation dated before its expiry, so the order of `at`s cannot revive it).
        """
        return account in self._swept

    def hold(self, workload: str) -> Hold | None:
        """The workload's hold, open or settled. A settled one is read back from its
        transactions (an audit's read: the store's, a database query for SQL); the control
        loop asks `open_hold` and `had_hold`, which read memory only."""
        found = self._holds.get(workload)
        if found is None and workload in self._settled:
            return self._replay_holds({workload}).get(workload)
        return found

    def open_hold(self, workload: str) -> Hold | None:
        """The workload's hold if it is open (memory only)."""
        return self._holds.get(workload)

    def had_hold(self, workload: str) -> bool:
        """Whether the workload has or had a hold (memory only)."""
        return workload in self._holds or workload in self._settled

    def holds(self, *, open_only: bool = False) -> tuple[Hold, ...]:
        """The holds in the order they were placed; settled ones too unless `open_only`, read
        back from the transactions (a whole read of the journal: tests and small journals;
        the API asks `recent_holds`). A journal restored from a state over a store of only the
        later transactions (`Journal(chart, state=s, store=rest)`) lists the settled holds it
        has the HOLD of."""
        if open_only or not self._settled:
            return tuple(self._holds.values())
        found = self._replay_holds(None)
        early = [h for w, h in self._holds.items() if w not in found]  # placed before a state
        return (*early, *(self._holds.get(w, h) for w, h in found.items()
                          if w in self._holds or w in self._settled))

    def recent_holds(self, limit: int, queues: Collection[str] | None = None, *,
                     open_only: bool = False) -> tuple[Hold, ...]:
        """The newest `limit` holds of `queues` (or all), in the order they were placed: open
        ones from memory; with settled ones, the store names the newest holds and only those
        that were settled are read back (`recent_hold_workloads`: a bounded read, not the
        whole journal; a store that cannot do that is read whole, as `holds` does)."""
        def kept(h: Hold) -> bool:
            return queues is None or h.queue in queues

        recent = getattr(self._store, "recent_hold_workloads", None)
        if open_only or not self._settled or recent is None:
            found = [h for h in self.holds(open_only=open_only) if kept(h)]
            return tuple(found[max(0, len(found) - limit):])
        names = list(reversed(recent(limit, queues)))
        settled = {w for w in names if w not in self._holds and w in self._settled}
        read = self._replay_holds(settled) if settled else {}
        return tuple(h for w in names if (h := self._holds.get(w) or read.get(w)) is not None)

    def _replay_holds(self, wanted: set[str] | None) -> dict[str, Hold]:
        """The holds that the stored transactions make (of `wanted`, or all), as `_apply_hold`
        made them; a store that can read one workload's transactions does (`transactions_of`)."""
        of = getattr(self._store, "transactions_of", None)
        txs = self._store if wanted is None or of is None else of(sorted(wanted))
        out: dict[str, Hold] = {}
        for tx in txs:
            kind, workload = tx.intent.kind, tx.intent.workload
            if kind not in _HOLD_KINDS or (wanted is not None and workload not in wanted):
                continue
            before = out.get(workload)
            if before is not None or kind is TxKind.HOLD:
                out[workload] = _hold_after(before, tx)
        return out

    def transferred(self, queue: str, *, incoming: bool) -> Decimal:
        """Net credits moved into (incoming) or out of a queue by transfers."""
        return self._transfers.get((queue, incoming), ZERO)

    def state(self, *, copy: bool = True) -> JournalState:
        """The derived state, for a checkpoint (see `JournalState`): a copy, or with
        `copy=False` a view of the journal's own mappings and sets, valid until the next post
        (a checkpoint written under the ledger's lock: no copy of 100,000 balances at once)."""
        if not copy:
            return JournalState(self._balances, tuple(self._lots.values()),
                                tuple(self._holds.values()), self._swept,  # type: ignore[arg-type]
                                self._transfers, self._settled)  # type: ignore[arg-type]
        return JournalState(dict(self._balances), tuple(self._lots.values()),
                            tuple(self._holds.values()), frozenset(self._swept),
                            dict(self._transfers), frozenset(self._settled))

    def _restore(self, state: JournalState) -> None:
        self._balances = dict(state.balances)
        for account in self._balances:
            self._accounts_by_queue.setdefault(account.queue, set()).add(account)
        for lot in state.lots:
            self._lots[lot.account] = lot
            self._lots_by_queue.setdefault(lot.account.queue, []).append(lot)
            self._lots_sorted.pop(lot.account.queue, None)
        self._holds = {h.workload: h for h in state.holds}
        self._settled = set(state.settled)
        self._swept = set(state.swept)
        self._transfers = dict(state.transfers)

    # -- checking and applying -----------------------------------------------------------------

    def _check(self, tx: Transaction) -> None:
        """Refuse a malformed transaction with a message that says what is wrong."""
        if not tx.key:
            raise UnbalancedTransactionError("a transaction needs a non-empty idempotency key")
        self.chart.require(tx.intent.queue, "intent.queue")
        if tx.intent.counterparty:
            self.chart.require(tx.intent.counterparty, "intent.counterparty")
        if tx.total != 0:
            raise UnbalancedTransactionError(f"{tx.key!r}: postings sum to {tx.total}, not 0")
        if not tx.postings and tx.intent.kind not in (TxKind.HOLD, TxKind.SETTLE):
            raise UnbalancedTransactionError(f"{tx.key!r}: a {tx.intent.kind} needs postings")
        if len({p.account for p in tx.postings}) != len(tx.postings):
            raise UnbalancedTransactionError(f"{tx.key!r}: one posting per account, please")
        opened = {lot.account for lot in tx.opens}
        for lot in tx.opens:
            if lot.account.kind is not AccountKind.CREDITS or lot.account in self._lots:
                raise UnbalancedTransactionError(f"{tx.key!r}: cannot open {lot.account.key}")
        for posting in tx.postings:
            self._check_posting(tx, posting, opened)
        self._check_hold_transition(tx)

    def _check_posting(self, tx: Transaction, posting: Posting, opened: set[Account]) -> None:
        # the balance read from the dict directly, not through `balance`: this runs for each
        # posting of each transaction (50,000 in a step that places and ends 10,000 attempts)
        account, amount = posting.account, posting.amount
        if account.queue not in self.chart:  # the message built only when it is needed
            self.chart.require(account.queue, f"posting {account.key}")
        if amount == 0 or amount != amount.quantize(self.currency.quantum):
            raise UnbalancedTransactionError(
                f"{tx.key!r}: posting {amount} on {account.key} is zero or not at "
                f"{self.currency.places} decimal places"
            )
        kind = account.kind
        if kind is AccountKind.CREDITS:
            after = self._balances.get(account, ZERO) + amount
            if account not in self._lots and account not in opened:
                raise UnbalancedTransactionError(f"{tx.key!r}: {account.key} is not an open lot")
            if after < 0 and not account.is_overdraft:
                raise UnbalancedTransactionError(f"{tx.key!r}: {account.key} would go to {after}")
        elif kind is AccountKind.HOLD:
            after = self._balances.get(account, ZERO) + amount
            if account.ref != tx.intent.workload or after < 0:
                raise UnbalancedTransactionError(
                    f"{tx.key!r}: bad hold posting {amount} on {account.key}"
                )
            if tx.intent.kind is TxKind.SETTLE and after != 0:
                raise UnbalancedTransactionError(f"{tx.key!r}: settlement leaves {account.key}")

    def _check_hold_transition(self, tx: Transaction) -> None:
        kind, workload = tx.intent.kind, tx.intent.workload
        if kind not in (TxKind.HOLD, TxKind.TOPUP, TxKind.SETTLE):
            return
        hold = self._holds.get(workload)  # open holds only: a settled one is a name
        if kind is TxKind.HOLD and (hold is not None or workload in self._settled):
            raise HoldStateError(f"workload {workload!r} already has a hold (key {tx.key!r})")
        if kind is not TxKind.HOLD and hold is None:
            state = "a settled hold" if workload in self._settled else "no hold"
            raise HoldStateError(f"workload {workload!r} has {state}; cannot {kind.value} it")
        if kind is TxKind.SETTLE:
            assert hold is not None
            left = {a for a in self._hold_accounts(hold) if self.balance(a) != 0}
            if not left <= {p.account for p in tx.postings}:
                raise UnbalancedTransactionError(f"{tx.key!r}: settlement misses hold accounts")

    def _hold_accounts(self, hold: Hold) -> tuple[Account, ...]:
        return tuple(Account.hold(q, hold.workload) for q in hold.funders)

    def _apply(self, tx: Transaction) -> None:
        for lot in tx.opens:
            self._lots[lot.account] = lot
            self._lots_by_queue.setdefault(lot.account.queue, []).append(lot)
            self._lots_sorted.pop(lot.account.queue, None)
        balances, transfer = self._balances, tx.intent.kind is TxKind.TRANSFER
        for posting in tx.postings:
            account = posting.account
            before = balances.get(account)
            if before is None:  # a new account: the only time its queue's set can change
                balances[account] = ZERO + posting.amount  # as before: same exponent
                self._accounts_by_queue.setdefault(account.queue, set()).add(account)
            else:
                balances[account] = before + posting.amount
            if transfer and account.kind is AccountKind.CREDITS:
                incoming = account.queue != tx.intent.queue
                self._transfers[(account.queue, incoming)] = self.transferred(
                    account.queue, incoming=incoming
                ) + (posting.amount if incoming else -posting.amount)
        if tx.intent.kind is TxKind.EXPIRE:
            self._swept.update(
                p.account for p in tx.postings if p.account.kind is AccountKind.CREDITS
            )
        self._apply_hold(tx)

    def _apply_hold(self, tx: Transaction) -> None:
        kind, workload = tx.intent.kind, tx.intent.workload
        if kind not in _HOLD_KINDS:
            return
        if kind is not TxKind.SETTLE:
            self._holds[workload] = _hold_after(self._holds.get(workload), tx)
            return
        # a settlement leaves the hold's accounts at zero (`_check_posting`): the hold, its
        # draws and its accounts are dropped, not kept for ever; its name stays
        hold = self._holds.pop(workload)
        self._settled.add(workload)
        for queue in hold.funders:
            account = Account.hold(queue, workload)
            if self._balances.pop(account, ZERO) != 0:  # pragma: no cover - checked above
                raise AssertionError(f"{account.key} settled at a non-zero balance")
            self._accounts_by_queue.get(queue, set()).discard(account)


_HOLD_KINDS = frozenset((TxKind.HOLD, TxKind.TOPUP, TxKind.SETTLE))


def _hold_after(hold: Hold | None, tx: Transaction) -> Hold:
    """The hold after one of its transactions (a HOLD opens it: `hold` is None then)."""
    # Hold and Posting built directly, not by dataclasses.replace: this runs once per
    # hold and per settlement (10,000s in one step) and replace re-reads the fields
    kind = tx.intent.kind
    if kind is TxKind.SETTLE:
        assert hold is not None
        return Hold(hold.workload, hold.queue, hold.placed_at, hold.draws,
                    settled_by=tx.key, charged=tx.intent.amount)
    draws = tuple(
        Posting(p.account, -p.amount)
        for p in tx.postings
        if p.account.kind is AccountKind.CREDITS and p.amount < 0
    )
    if kind is TxKind.HOLD:
        return Hold(tx.intent.workload, tx.intent.queue, tx.at, draws)
    assert hold is not None  # a top-up adds its draws to the open hold
    return Hold(hold.workload, hold.queue, hold.placed_at, hold.draws + draws,
                hold.settled_by, hold.charged)
