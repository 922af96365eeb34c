"""The account chart: which accounts exist and how queue accounts nest.

Every queue has its own small set of accounts; money only ever moves between them by balanced
transactions (see `corral.ledger.journal`). For a queue `q`:

| account              | balance means                                      | sign      |
| -------------------- | -------------------------------------------------- | --------- |
| `granted:q`          | source of every credit granted to q                | <= 0      |
| `credits:q:<lot>`    | available credits of q, one *lot* per grant        | >= 0      |
| `credits:q:overdraft`| debt when a settlement cost more than q had        | <= 0      |
| `hold:q:<workload>`  | credits of q held in escrow for a running workload | >= 0      |
| `spent:q`            | settled charges paid by q                          | >= 0      |
| `expired:q`          | credits of q that lapsed unspent                   | >= 0      |

so that, for every queue, at every moment (see `corral.ledger.statements`):

    sum(credits:q:*) = granted - settled - held - expired + transferred_in - transferred_out

Queues nest (`QueueChart`): a child's hold may be paid by an ancestor when the child lacks
credits; each account still belongs to exactly one queue, so the identity holds per queue.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from corral.core.model import Queue
from corral.ledger.errors import LedgerInputError

__all__ = ["OVERDRAFT", "Account", "AccountKind", "QueueChart"]

OVERDRAFT = "overdraft"


class AccountKind(enum.StrEnum):
    GRANTED = "granted"
    CREDITS = "credits"
    HOLD = "hold"
    SPENT = "spent"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """One account: its kind, the queue that owns it, and a reference (lot id or workload id)."""

    kind: AccountKind
    queue: str
    ref: str = ""
    # The hash, computed once: an account is a dict key of every balance read and posting
    # (a step's 10,000 holds and settlements hash one 500,000 times), and the generated hash
    # re-hashed the three fields each time, the kind through Enum.__hash__ in Python.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.kind, self.queue, self.ref)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def key(self) -> str:
        """Human-readable name, e.g. 'credits:research:grant-7' (for display and CSV only)."""
        return f"{self.kind.value}:{self.queue}" + (f":{self.ref}" if self.ref else "")

    @classmethod
    def granted(cls, queue: str) -> Account:
        return _shared(AccountKind.GRANTED, queue)

    @classmethod
    def lot(cls, queue: str, lot: str) -> Account:
        return cls(AccountKind.CREDITS, queue, lot)

    @classmethod
    def overdraft(cls, queue: str) -> Account:
        return _shared(AccountKind.CREDITS, queue, OVERDRAFT)

    @classmethod
    def hold(cls, queue: str, workload: str) -> Account:
        return cls(AccountKind.HOLD, queue, workload)

    @classmethod
    def spent(cls, queue: str) -> Account:
        return _shared(AccountKind.SPENT, queue)

    @classmethod
    def expired(cls, queue: str) -> Account:
        return _shared(AccountKind.EXPIRED, queue)

    @property
    def is_overdraft(self) -> bool:
        return self.kind is AccountKind.CREDITS and self.ref == OVERDRAFT


#: a queue's own accounts (granted, spent, expired, overdraft), one object each: every
#: settlement names two or three of them, and a dict finds the very object it stores by
#: identity, without comparing fields. A few per queue; equal to a new one in every way.
_SHARED: dict[tuple[AccountKind, str, str], Account] = {}


def _shared(kind: AccountKind, queue: str, ref: str = "") -> Account:
    found = _SHARED.get((kind, queue, ref))
    if found is None:
        found = _SHARED[(kind, queue, ref)] = Account(kind, queue, ref)
    return found


class QueueChart:
    """The queue tree the accounts hang from. Immutable; `with_queue` returns a new chart."""

    def __init__(self, parents: Mapping[str, str | None]) -> None:
        for name, parent in parents.items():
            if not name or not name.strip():
                raise LedgerInputError("queue", "a queue name is empty", "name every queue")
            if parent is not None and parent not in parents:
                raise LedgerInputError(
                    f"queue {name!r}.parent",
                    f"parent {parent!r} is not a known queue",
                    "declare the parent queue too, or drop the parent",
                )
        self._parents = dict(parents)
        # each queue's chain, walked once: the chart never changes, and every hold and
        # admission check asks for its queue's
        self._chains = {name: self._walk_up(name) for name in self._parents}  # refuses cycles

    @classmethod
    def from_queues(cls, queues: Iterable[Queue]) -> QueueChart:
        """The chart of `corral.core.model.Queue`s (one account per queue, nested by parent)."""
        return cls({q.name: q.parent for q in queues})

    def with_queue(self, name: str, parent: str | None = None) -> QueueChart:
        if name in self._parents and self._parents[name] != parent:
            raise LedgerInputError(
                "parent",
                f"queue {name!r} already has parent {self._parents[name]!r}",
                "queues cannot be moved in the ledger; create a new queue",
            )
        return QueueChart({**self._parents, name: parent})

    def __contains__(self, name: object) -> bool:
        return name in self._parents

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(sorted(self._parents))

    def parent(self, name: str) -> str | None:
        return self._parents[self.require(name)]

    def chain(self, name: str) -> tuple[str, ...]:
        """The queue itself, then its parent, and so on up to the root."""
        return self._chains[self.require(name)]

    def subtree(self, name: str) -> tuple[str, ...]:
        """The queue and all its descendants, sorted."""
        self.require(name)
        return tuple(q for q in self.queues if name in self._walk_up(q))

    def require(self, name: str, field: str = "queue") -> str:
        """Return `name` if it is a known queue; otherwise raise a clear input error."""
        if name not in self._parents:
            known = ", ".join(self.queues) or "none yet"
            raise LedgerInputError(
                field, f"unknown queue {name!r}", f"use one of the known queues ({known})"
            )
        return name

    def _walk_up(self, name: str) -> tuple[str, ...]:
        seen = [name]
        parent = self._parents[name]
        while parent is not None:
            if parent in seen:
                raise LedgerInputError(
                    f"queue {name!r}.parent", "queues form a cycle", "make the queue tree a tree"
                )
            seen.append(parent)
            parent = self._parents[parent]
        return tuple(seen)
