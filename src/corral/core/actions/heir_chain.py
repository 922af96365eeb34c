"""The hand-over chain: which heir takes a holder's kept slot (`allocate._hand_over`).

A holder gives its slot to its first heir that can take it, that heir's own heirs first (the
chain, see `allocate._hand_over` for why). Heirs are read from one list of the elders sorted by
age (`reservation_heirs.elders_before`), and this cycle's victims. The walk was recursive
and rebuilt each heir's list of elders (a prefix of thousands) for every heir it tried, so a
chain over thousands of heirs did tries x elders work and recursed once per heir: the cycle
after a plan was applied did not finish at 10,000 x 100,000 (bench/schedule_cycle.py, issue
10) and a small `max_reservation_s` with ~900 chained gangs raised RecursionError.

Here the walk is a loop over an explicit stack. Each frame keeps a pointer into the shared
sorted lists, and what is gone for every frame (tried, placed or holding) is skipped through a
next-pointer map with path compression, so each is stepped over about once per walk. What a
frame's holder refuses (work of its queue below its priority) is skipped the same way through
a map per kind of holder (queue, priority), shared by its frames: a mix of low- and
high-priority gangs of the holder's own queue made each high one's frame step again over every
low one older than it (~n^2/8 entries; tests/core/test_heir_chain.py). A kind's map learns a
run of gone entries in one jump from the shared map, so each entry is read about once per kind.

The order of tries is the recursive one, heir for heir: a frame's heirs are its elders, then
victims, by (age, id); the list was filtered when its frame opened, and a frame checks the same
things when it reaches each entry. Within one walk nothing it checks changes except placements
(checked on reaching) and holding, which changes only when an heir takes the slot, which ends the
walk."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.core.cycle import Cycle
    from corral.core.model import Workload


@dataclass
class _Gone:
    """Entries of one sorted list that no frame of the walk can take any more (tried,
    placed, holding): `find(i)` is the first entry at or after `i` not known gone."""

    nxt: dict[int, int] = field(default_factory=dict)

    def find(self, i: int) -> int:
        root = i
        while root in self.nxt:
            root = self.nxt[root]
        while i != root:  # path compression: the next find from here is one step
            self.nxt[i], i = root, self.nxt[i]
        return root

    def drop(self, i: int) -> None:
        self.nxt[i] = i + 1


@dataclass
class _Frame:
    holder: Workload
    before: float  # heirs are submitted before this (`may_inherit`)
    ends: tuple[int, int]  # how far into the elders and the victims they may be
    at: list[int]  # where the frame has read to in each list
    #: per list, what frames of its holder's kind (queue, priority) cannot take: gone, or
    #: refused (its queue, lower priority)
    skip: tuple[_Gone, _Gone]


class HeirChain:
    """One walk of `allocate._hand_over` from one holder; `steps` counts entries read."""

    def __init__(self, cycle: Cycle, elders: tuple[list[float], list[Workload]],
                 victims: list[Workload], keep: Callable[[Workload], bool]) -> None:
        self.cycle, self.keep = cycle, keep
        self.lists = (elders[1], victims)
        self.ages = (elders[0], [w.submitted_at for w in victims])
        self.gone = (_Gone(), _Gone())
        self.held = set(cycle.reserved_before) | cycle.cap.reservations.keys()
        self.tried: set[str] = set()
        self.kinds: dict[tuple[str, int], tuple[_Gone, _Gone]] = {}
        self.steps = 0

    def hand_over(self, holder: Workload,
                  some_may_act: Callable[[], bool] = lambda: True) -> bool:
        """True if an heir of `holder` (or of an heir, first) took the slot.

        `some_may_act`: whether any heir this walk can still judge (elders and victims
        submitted a window before `holder`, a superset of them) could start or take a slot
        now (`allocate._some_may_act`). When it says no, every later `keep` (a frame's
        holder or a heir not tried yet) would fail and change nothing: no start (none of
        their shapes fits), no reservation (no slot free, or none of their queues and sizes
        may succeed), no reason or set-aside (only an heir that fits is tried, `try_place`;
        `heir_memo._same`). So none would change the answer for the next either: the walk
        ends there, taking nobody, as walking on would; what it leaves (`tried`, `steps`,
        the memo) is its own. Only a start changes the answer, so it is asked again at the
        first failure after a start (issue 10, speed: at 10,000 x 100,000 seed 2 a walk
        started its last heir at its 3,025th of 12,333 `keep`s)."""
        stmt = self.cycle.stmt
        asked = stmt.applied  # (the walk was entered because `some_may_act` said yes)
        stack = [self._frame(holder)]
        while stack:
            heir = self._next(stack[-1])
            if heir is not None:
                self.tried.add(heir.id)
                stack.append(self._frame(heir))
                continue
            done = stack.pop()  # its heirs could not take it: it may keep the slot itself
            if not stack:
                return False
            applied = stmt.applied
            if self.keep(done.holder):
                return True
            if stmt.applied == applied != asked:  # failed, nothing started, after a start
                asked = applied
                if not some_may_act():
                    return False  # nobody left may act: every later `keep` fails
        return False

    def _frame(self, holder: Workload) -> _Frame:
        before = holder.submitted_at - self.cycle.config.max_reservation_s
        ends = (bisect_left(self.ages[0], before), bisect_left(self.ages[1], before))
        kind = (holder.queue, holder.priority)
        skip = self.kinds.get(kind)
        if skip is None:
            skip = self.kinds[kind] = (_Gone(), _Gone())
        return _Frame(holder, before, ends, [0, 0], skip)

    def _next(self, f: _Frame) -> Workload | None:
        """The frame's next heir not tried yet, oldest first (then by id), or None."""
        i, j = self._head(f, 0), self._head(f, 1)
        if j >= f.ends[1]:
            if i >= f.ends[0]:
                return None
            k = 0
        elif i >= f.ends[0]:
            k = 1
        else:
            a, b = self.lists[0][i], self.lists[1][j]
            k = 0 if (a.submitted_at, a.id) <= (b.submitted_at, b.id) else 1
        f.at[k] += 1
        return self.lists[k][f.at[k] - 1]

    def _head(self, f: _Frame, k: int) -> int:
        """Where the frame's next entry in list `k` is (its end if none): the first entry at
        or after its pointer that is not gone and that its holder does not refuse."""
        skip, gone, entries = f.skip[k], self.gone[k], self.lists[k]
        where, queue, priority = self.cycle.stmt.where, f.holder.queue, f.holder.priority
        i, end = f.at[k], f.ends[k]
        while True:
            i = skip.find(i)
            if i >= end:
                break
            j = gone.find(i)
            if j != i:  # a run gone for every frame: the kind jumps it at once from now on
                skip.nxt[i] = i = j
                continue
            w = entries[i]
            self.steps += 1
            if w.id in self.tried or w.id in where or w.id in self.held:
                gone.drop(i)  # for every frame of this walk
                skip.drop(i)
            elif w.queue == queue and w.priority < priority:
                skip.drop(i)  # for every frame of this kind
            else:
                break
        f.at[k] = i
        return i
