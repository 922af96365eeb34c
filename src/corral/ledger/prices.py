"""Prices: what one GPU-hour costs on a given kind of capacity at a given time.

A `PriceRule` prices a GPU-hour for a pattern of (provider, region, GPU model, capacity kind);
any of the four may be a wildcard (`None`, or "*" through `PriceRule.of`). It is valid on the
half-open interval [valid_from, valid_until); `None` means "since always" / "for ever".

Which rule wins when several match (the most specific one):

1. the rule that names more of the four fields;
2. on a tie, the rule that names the more significant field, in the order
   provider > region > GPU model > capacity kind (a price agreed with one provider beats a
   list price for a GPU model; think "a contract beats a catalogue");
3. two rules naming the same fields with the same values must not overlap in time: the catalog
   refuses them (there would be no way to tell which one was meant).

Fractional GPUs pay their fraction: cost = milli / 1000 x hours x price. An interval that
crosses a price change is split at the change and each part is priced at its own rule; the
parts are exact `Fraction`s, so the parts always add up to the whole, with no rounding at all
(rounding is for settlement only, see `corral.ledger.money`).

Worked example: 500 milli-GPU from 09:30 to 10:30, the price moves from 2.00 to 3.00 at 10:00:
0.5 x 0.5 h x 2.00 + 0.5 x 0.5 h x 3.00 = 0.50 + 0.75 = 1.25.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from corral.core.model import MILLI_PER_GPU, CapacityKind
from corral.ledger.errors import LedgerInputError, NoPriceError
from corral.ledger.instants import Instant, to_instant
from corral.ledger.money import to_decimal

__all__ = ["WILDCARD", "PriceCatalog", "PriceKey", "PriceRule", "PricedSegment"]

WILDCARD = "*"
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True, slots=True)
class PriceKey:
    """What a piece of usage ran on: the four fields a price can depend on."""

    provider: str
    region: str
    gpu_model: str
    capacity_kind: CapacityKind


@dataclass(frozen=True, slots=True)
class PriceRule:
    """A price per GPU-hour for a pattern of capacity, valid on [valid_from, valid_until)."""

    price_per_gpu_hour: Decimal
    provider: str | None = None
    region: str | None = None
    gpu_model: str | None = None
    capacity_kind: CapacityKind | None = None
    valid_from: Instant | None = None
    valid_until: Instant | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.price_per_gpu_hour, Decimal) or not self.price_per_gpu_hour >= 0:
            raise LedgerInputError(
                "price_per_gpu_hour",
                f"{self.price_per_gpu_hour!r} is not a non-negative Decimal",
                "use PriceRule.of(...) or pass Decimal('2.40')",
            )
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and not self.valid_from < self.valid_until
        ):
            raise LedgerInputError(
                "valid_until",
                f"{self.valid_until} is not after valid_from {self.valid_from}",
                "give a validity period that ends after it starts",
            )

    @classmethod
    def of(
        cls,
        price_per_gpu_hour: object,
        *,
        provider: str | None = None,
        region: str | None = None,
        gpu_model: str | None = None,
        capacity_kind: CapacityKind | str | None = None,
        valid_from: object = None,
        valid_until: object = None,
    ) -> PriceRule:
        """Build a rule from loose input ("*" for a wildcard, a str price, a float time)."""
        kind = _wild(capacity_kind if capacity_kind is None else str(capacity_kind))
        if kind is not None and kind not in {k.value for k in CapacityKind}:
            raise LedgerInputError(
                "capacity_kind",
                f"{kind!r} is not a capacity kind",
                f"use one of {', '.join(k.value for k in CapacityKind)} or '*'",
            )
        return cls(
            price_per_gpu_hour=to_decimal(price_per_gpu_hour, "price_per_gpu_hour"),
            provider=_wild(provider),
            region=_wild(region),
            gpu_model=_wild(gpu_model),
            capacity_kind=None if kind is None else CapacityKind(kind),
            valid_from=None if valid_from is None else to_instant(valid_from, "valid_from"),
            valid_until=None if valid_until is None else to_instant(valid_until, "valid_until"),
        )

    @property
    def pattern(self) -> tuple[str | None, str | None, str | None, CapacityKind | None]:
        return (self.provider, self.region, self.gpu_model, self.capacity_kind)

    @property
    def specificity(self) -> tuple[int, int]:
        """Sort key: (fields named, bitmask provider=8 region=4 model=2 kind=1); higher wins."""
        named = [field is not None for field in self.pattern]
        mask = sum(8 >> i for i, is_named in enumerate(named) if is_named)
        return (sum(named), mask)

    def matches(self, key: PriceKey) -> bool:
        wanted = (key.provider, key.region, key.gpu_model, key.capacity_kind)
        return all(p is None or p == w for p, w in zip(self.pattern, wanted, strict=True))

    def valid_at(self, instant: Instant) -> bool:
        return (self.valid_from is None or self.valid_from <= instant) and (
            self.valid_until is None or instant < self.valid_until
        )


@dataclass(frozen=True, slots=True)
class PricedSegment:
    """A piece [start, end) of an interval that is priced by one rule."""

    start: Instant
    end: Instant
    rule: PriceRule

    @property
    def price_per_gpu_hour(self) -> Decimal:
        return self.rule.price_per_gpu_hour

    def cost(self, milli: int) -> Fraction:
        """Exact cost of `milli` milli-GPUs over this segment."""
        return (
            Fraction(milli)
            * Fraction(self.end - self.start)
            * Fraction(self.rule.price_per_gpu_hour)
            / (MILLI_PER_GPU * SECONDS_PER_HOUR)
        )


class PriceCatalog:
    """An immutable set of price rules. Lookups are pure; see the module docstring for precedence."""

    def __init__(self, rules: Iterable[PriceRule]) -> None:
        # Most specific first, so the first matching valid rule is the winner.
        self._rules = tuple(sorted(rules, key=lambda r: r.specificity, reverse=True))
        _refuse_overlaps(self._rules)
        # the rules that match each key, most specific first: a settlement burst prices
        # thousands of usage rows on a few dozen keys, and each lookup scanned every rule
        self._matching: dict[PriceKey, tuple[PriceRule, ...]] = {}
        # per key whose rules never change in time: its price per milli-GPU-second (None: the
        # key has dated rules, or none at all, and is priced segment by segment)
        self._flat: dict[PriceKey, Fraction | None] = {}

    def _rules_for(self, key: PriceKey) -> tuple[PriceRule, ...]:
        found = self._matching.get(key)
        if found is None:
            found = self._matching[key] = tuple(r for r in self._rules if r.matches(key))
        return found

    @property
    def rules(self) -> tuple[PriceRule, ...]:
        return self._rules

    def rule_at(self, key: PriceKey, instant: Instant) -> PriceRule:
        """The winning rule for `key` at `instant`; NoPriceError if none covers it."""
        for rule in self._rules_for(key):
            if rule.valid_at(instant):
                return rule
        raise NoPriceError(
            "prices",
            f"no price for provider={key.provider} region={key.region} "
            f"gpu_model={key.gpu_model} capacity_kind={key.capacity_kind.value} at t={instant}",
            "add a price rule that covers it (wildcards '*' are allowed)",
        )

    def segments(self, key: PriceKey, start: Instant, end: Instant) -> tuple[PricedSegment, ...]:
        """Split [start, end) at every price change for `key`; adjacent equal rules are merged."""
        if end < start:
            raise LedgerInputError("end", f"{end} is before start {start}", "swap them")
        cuts = {start, end}
        for rule in self._rules_for(key):
            cuts.update(
                t for t in (rule.valid_from, rule.valid_until) if t is not None and start < t < end
            )
        bounds = sorted(cuts)
        pieces: list[PricedSegment] = []
        for a, b in itertools.pairwise(bounds):
            rule = self.rule_at(key, a)
            if pieces and pieces[-1].rule == rule:
                pieces[-1] = PricedSegment(pieces[-1].start, b, rule)
            else:
                pieces.append(PricedSegment(a, b, rule))
        return tuple(pieces)

    def cost(self, key: PriceKey, milli: int, start: Instant, end: Instant) -> Fraction:
        """Exact cost of `milli` milli-GPUs on `key` over [start, end), split at price changes.

        A key whose rules are all undated has one price at every instant: its cost is a single
        product, with no segments built (a settlement burst prices 10,000s of attempts; the
        result is the same exact fraction the segments would sum to)."""
        rate = self._flat_rate(key)
        if rate is None or end < start:  # dated rules, no rule (NoPriceError), or bad bounds
            return sum((s.cost(milli) for s in self.segments(key, start, end)), Fraction(0))
        return Fraction(milli) * Fraction(end - start) * rate

    def _flat_rate(self, key: PriceKey) -> Fraction | None:
        if key in self._flat:
            return self._flat[key]
        rules = self._rules_for(key)
        rate = None
        if rules and all(r.valid_from is None and r.valid_until is None for r in rules):
            rate = Fraction(rules[0].price_per_gpu_hour) / (MILLI_PER_GPU * SECONDS_PER_HOUR)
        self._flat[key] = rate
        return rate


def _wild(value: str | None) -> str | None:
    return None if value is None or value.strip() in ("", WILDCARD) else value


def _refuse_overlaps(rules: tuple[PriceRule, ...]) -> None:
    by_pattern: dict[object, list[PriceRule]] = {}
    for rule in rules:
        by_pattern.setdefault(rule.pattern, []).append(rule)
    for same in by_pattern.values():
        same.sort(key=lambda r: (r.valid_from is not None, r.valid_from or 0))
        for before, after in itertools.pairwise(same):
            if before.valid_until is None or (
                after.valid_from is None or after.valid_from < before.valid_until
            ):
                raise LedgerInputError(
                    "prices",
                    f"two prices for {_describe(before)} overlap in time "
                    f"({before.price_per_gpu_hour} and {after.price_per_gpu_hour})",
                    "end the older one (valid_until) where the newer one starts (valid_from)",
                )


def _describe(rule: PriceRule) -> str:
    names = ("provider", "region", "gpu_model", "capacity_kind")
    parts = [
        f"{n}={v if v is not None else WILDCARD}" for n, v in zip(names, rule.pattern, strict=True)
    ]
    return " ".join(parts)
