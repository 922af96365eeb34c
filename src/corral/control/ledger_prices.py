"""The live price catalog: explicit price rules first, the nodes' own prices where none applies.

Also what an attempt costs at those prices (`span_cost`, `hold_amount`), memoised per pass: the
accounting stage prices thousands of attempts of a few shapes in one step.

Two sources of prices, and which wins:

1. **Explicit rules** (`prices:` in the pool file, and rules admins add through the API), with
   validity periods and wildcards; among them the ledger's precedence holds (the most specific
   rule wins, see `corral.ledger.prices`).
2. **Node prices** (`price_per_gpu_hour` of a node group, or its provider's `prices:` per GPU
   model): for each (provider, region, GPU model, capacity kind) of the pool, a fallback that
   applies only *where no explicit rule matches*: we compute the gaps in time that the matching
   explicit rules leave and price exactly those. (A fallback naming all four fields would
   otherwise beat every wildcard rule, because the ledger prefers specific rules.)

Nodes of one key with different prices: the highest one is the fallback, so a hold never falls
short of what any of them costs (say so in the pool: give those nodes their own provider).

One price for placement and billing (`billed_nodes`): an explicit rule is *meant* to override the
node's price, so the scheduler sees the price the ledger bills now: each node of a snapshot
carries the catalog's price for its key at `now` before the core ranks nodes and checks price
caps. Without it a job capped at 0.50/GPU-hour could be placed on a node priced 0.40 and be
billed 5.00 by a rule. Where no rule applies the node's own price is the fallback, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from corral.core.model import Node, WorkerAssignment
from corral.ledger import PriceCatalog, PriceKey, PriceRule
from corral.ledger.errors import LedgerError
from corral.ledger.instants import Instant, to_instant
from corral.ledger.journal import Journal

__all__ = [
    "Amounts", "BilledMemo", "Costs", "attempt_cost", "billed_nodes", "build_catalog",
    "hold_amount", "node_key", "node_prices", "span_cost",
]


def node_key(node: Node) -> PriceKey:
    return PriceKey(node.provider, node.region, node.gpu_model, node.capacity_kind)


def node_prices(nodes: Iterable[Node]) -> dict[PriceKey, Decimal]:
    """The fallback price per key: the highest price among the key's nodes (exact decimal)."""
    out: dict[PriceKey, Decimal] = {}
    for node in nodes:
        price = Decimal(repr(float(node.price_per_gpu_hour)))
        key = node_key(node)
        out[key] = max(out.get(key, price), price)
    return out


def build_catalog(rules: Sequence[PriceRule], nodes: Iterable[Node]) -> PriceCatalog:
    """Explicit `rules` plus node fallbacks in the gaps they leave. Raises LedgerInputError when
    two explicit rules for the same pattern overlap in time (the catalog cannot choose)."""
    fallbacks: list[PriceRule] = []
    for key, price in sorted(node_prices(nodes).items(), key=lambda kv: repr(kv[0])):
        spans = [(r.valid_from, r.valid_until) for r in rules if r.matches(key)]
        for start, end in _gaps(spans):
            fallbacks.append(PriceRule(price, key.provider, key.region, key.gpu_model,
                                       key.capacity_kind, start, end))
    return PriceCatalog([*rules, *fallbacks])


#: what `billed_nodes` made for each node last time: (the node given, its price key, the node
#: returned), by node id
BilledMemo = dict[str, tuple[Node, PriceKey, Node]]


def billed_nodes(nodes: Sequence[Node], catalog: PriceCatalog, now: float,
                 memo: BilledMemo | None = None) -> tuple[Node, ...]:
    """`nodes` with the price per GPU-hour the ledger bills for each at `now` (the same node
    object where it already carries that price; its own price where no rule covers it).

    With `memo` (kept by the caller between calls): a node given again, unchanged, whose billed
    price is the one last returned, comes back as the very object returned then. A pool whose
    nodes are billed other than their own price (a key's fallback is the dearest of its nodes)
    then costs a dictionary look-up per node, not a new node each cycle, and the scheduler sees
    the same objects as before."""
    at = to_instant(now, "now")
    prices: dict[PriceKey, float | None] = {}  # by key: the billed price at `now`
    out: list[Node] = []
    seen: BilledMemo = {}
    for node in nodes:
        last = None if memo is None else memo.get(node.id)
        if last is not None and last[0] is not node:
            last = None
        key = node_key(node) if last is None else last[1]
        if key not in prices:
            prices[key] = _billed_price(catalog, key, at)
        billed = prices[key]
        if billed is None:  # no rule: the ledger refuses to bill it; keep the node's own
            billed = node.price_per_gpu_hour
        if last is not None and last[2].price_per_gpu_hour == billed:
            made = last[2]
        else:
            made = (node if billed == node.price_per_gpu_hour
                    else replace(node, price_per_gpu_hour=billed))
        out.append(made)
        seen[node.id] = (node, key, made)
    if memo is not None:
        memo.clear()
        memo.update(seen)
    same = all(a is b for a, b in zip(out, nodes, strict=True))
    return nodes if same and isinstance(nodes, tuple) else tuple(out)


def _billed_price(catalog: PriceCatalog, key: PriceKey, at: Instant) -> float | None:
    try:
        return float(catalog.rule_at(key, at).price_per_gpu_hour)
    except LedgerError:
        return None


Span = tuple[Instant | None, Instant | None]


def _gaps(spans: Sequence[Span]) -> list[Span]:
    """The parts of all time that no span covers. None is minus/plus infinity.

    Example: [(None, 10), (20, None)] leaves [(10, 20)]; [] leaves [(None, None)].
    """
    if not spans:
        return [(None, None)]
    ordered = sorted(spans, key=lambda s: (s[0] is not None, s[0] or 0))
    gaps: list[Span] = []
    cursor: Instant | None = None  # covered up to here; None before the first span = -inf
    first = True
    for start, end in ordered:
        if first:
            if start is not None:
                gaps.append((None, start))
            cursor, first = end, False
            continue
        if cursor is None:  # covered up to +inf already
            return gaps
        if start is not None and start > cursor:
            gaps.append((cursor, start))
        if end is None or end > cursor:
            cursor = end
    if cursor is not None:
        gaps.append((cursor, None))
    return gaps


# -- what an attempt costs, memoised per pass (a step prices thousands of attempts alike) -----
#: exact costs already computed in one pass, by (price key, milli-GPUs, start, end)
Costs = dict[tuple[PriceKey, int, Decimal, Decimal], Fraction]


def span_cost(catalog: PriceCatalog, key: PriceKey, milli: int, start: Decimal, end: Decimal,
              costs: Costs) -> Fraction:
    """`catalog.cost`, computed once per distinct (key, milli, start, end) of a pass: a step's
    10,000 holds start at one instant on a few dozen price keys and a handful of sizes, and
    the attempts a step settles mostly share their start (the step that launched them) and
    their end (the step that saw them end); the exact same fraction either way."""
    found = costs.get((key, milli, start, end))
    if found is None:
        found = costs[(key, milli, start, end)] = catalog.cost(key, milli, start, end)
    return found


#: hold amounts already rounded in one pass, by (runtime, ((price key, milli-GPUs), ...))
Amounts = dict[tuple[Decimal, tuple[tuple[PriceKey, int], ...]], Decimal]


def hold_amount(journal: Journal, catalog: PriceCatalog,
                 assignments: Sequence[WorkerAssignment], nodes: Mapping[str, Node],
                 at: Decimal, seconds: Decimal, costs: Costs, amounts: Amounts) -> Decimal:
    """The hold of one attempt placed at `at`: its exact cost rounded up. Computed once per
    shape of a pass: a step's 10,000 holds share a few runtimes, price keys and sizes, and
    summing Fractions and rounding them cost as much as the rest of a hold. The same amount
    either way (the sum is exact, its order does not matter)."""
    shape = (seconds, tuple((node_key(node), a.milli_per_device * len(a.devices))
                            for a in assignments if (node := nodes.get(a.node_id)) is not None))
    found = amounts.get(shape)
    if found is None:
        exact = attempt_cost(catalog, assignments, nodes, at, seconds, costs)
        found = amounts[shape] = journal.currency.hold(exact)
    return found


def attempt_cost(catalog: PriceCatalog, assignments: Sequence[WorkerAssignment],
                  nodes: Mapping[str, Node], at: Decimal, seconds: Decimal,
                  costs: Costs) -> Fraction:
    total = Fraction(0)
    end = at + seconds
    for a in assignments:
        node = nodes.get(a.node_id)
        milli = a.milli_per_device * len(a.devices)
        if node is not None and milli > 0:
            total += span_cost(catalog, node_key(node), milli, at, end, costs)
    return total
