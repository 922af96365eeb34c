"""The shipped, dated offer catalog (catalog.json): offline hardware and on-demand list prices.

Every entry names its source and date; see the file's `about` for what the figures are and are
not. Offers built from it carry ``source = "catalog:catalog.json@<as_of>"``. Spot prices are
never in the catalog: the aws provider reads them from the spot price history API at run time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from corral.core.model import CapacityKind
from corral.providers.base import Offer

__all__ = ["CatalogEntry", "catalog", "catalog_offers", "lookup"]

FILE = "catalog.json"


@dataclass(frozen=True)
class CatalogEntry:
    provider: str
    instance_type: str
    gpu_model: str
    gpus: int
    gpu_memory_mib: int  # per GPU
    vcpus: int
    memory_mib: int
    region: str
    on_demand_per_hour: Decimal
    as_of: str
    source: str

    def offer(self, zone: str, *, provider: str | None = None,
              kind: CapacityKind = CapacityKind.ON_DEMAND,
              price: Decimal | None = None, source: str | None = None,
              as_of: str | None = None) -> Offer:
        """This entry as an offer in `zone` (by default on-demand at the catalog price)."""
        return Offer(provider or self.provider, self.instance_type, self.gpu_model, self.gpus,
                     self.gpu_memory_mib, self.vcpus * 1000, self.memory_mib,
                     self.on_demand_per_hour if price is None else price, kind, self.region, zone,
                     source or f"catalog:{FILE}@{self.as_of}", as_of or self.as_of)


@cache
def catalog() -> tuple[CatalogEntry, ...]:
    raw = json.loads(resources.files("corral.providers").joinpath(FILE).read_text())
    return tuple(CatalogEntry(
        e["provider"], e["instance_type"], e["gpu_model"], int(e["gpus"]),
        int(e["gpu_memory_mib"]), int(e["vcpus"]), int(e["memory_mib"]), e["region"],
        Decimal(e["on_demand_per_hour"]), e["as_of"], e["source"]) for e in raw["offers"])


def lookup(provider: str, instance_type: str) -> CatalogEntry | None:
    return next((e for e in catalog() if e.provider == provider
                 and e.instance_type == instance_type), None)


def catalog_offers(provider: str, zones: Iterable[str] = ("a",)) -> list[Offer]:
    """The catalog's on-demand offers of `provider`, one per zone suffix (`us-east-1` + `a`)."""
    return [e.offer(e.region + z if len(z) <= 2 else z)
            for e in catalog() if e.provider == provider for z in zones]
