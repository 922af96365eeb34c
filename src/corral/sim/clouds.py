"""Providers for the simulator: offer catalogs, spot interruption rates, provisioning delays.

`THREE_CLOUDS` is the evidence setup of docs/simulator.md: three providers whose prices differ
per GPU model, so that no single one is cheapest for everything. Per-GPU-hour on-demand prices
of H100 and A100 come from the shipped catalog (corral/providers/catalog.json: aws p5/p4d,
gcp a3/a2, lambda 8xH100/8xA100, each with its source and date); L40S prices and every spot
price are ILLUSTRATIVE assumptions (spot at a fixed fraction of on-demand, stated per provider),
not quotes: a live aws provider reads spot prices from the API. The synthetic trace's node types
(8 x H100, 8 x A100, 4 x L40S, see sim/synthetic.py) set the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from corral.core.model import CapacityKind
from corral.providers.base import Offer

__all__ = ["THREE_CLOUDS", "SimProvider", "cloud_set"]

_HW = {  # model -> (gpus, GPU memory MiB, vCPU milli, RAM MiB), as sim/synthetic.py's pool
    "H100": (8, 81_920, 96_000, 1_048_576),
    "A100": (8, 81_920, 128_000, 1_048_576),
    "L40S": (4, 49_152, 64_000, 524_288),
}


@dataclass(frozen=True)
class SimProvider:
    name: str
    offers: tuple[Offer, ...]
    max_nodes: int = 64  # per offer: how many instances of it the provider can give at once
    provisioning_s: float = 300.0  # launch -> agent joined
    spot_mtbi_s: float | None = 6 * 3600.0  # mean time between interruptions of a spot node
    spot_notice_s: float = 120.0
    launch_failure_rate: float = 0.0  # a launch refused (NoCapacity) with this probability


def _offers(provider: str, region: str, prices: dict[str, str], spot_fraction: str | None,
            source: str) -> tuple[Offer, ...]:
    out = []
    for model, per_gpu in prices.items():
        gpus, gmem, cpu, ram = _HW[model]
        kinds = [(CapacityKind.ON_DEMAND, Decimal(per_gpu))]
        if spot_fraction is not None:
            kinds.append((CapacityKind.SPOT, Decimal(per_gpu) * Decimal(spot_fraction)))
        for kind, price in kinds:
            out.append(Offer(provider, f"{model.lower()}x{gpus}", model, gpus, gmem, cpu, ram,
                             (price * gpus).quantize(Decimal("0.0001")), kind, region,
                             region + "a", source, "2026-12-03"))
    return tuple(out)


#: aws: catalog list prices (p5 12.29, p4d 4.10 per GPU-hour), L40S 2.33 illustrative; spot at
#: 40% of on-demand (illustrative). gcp: catalog (a3 11.03, a2 3.67), L40S 2.10 illustrative;
#: spot at 30%. lambda: catalog (2.99, 1.79), L40S 1.20 illustrative; no spot.
THREE_CLOUDS = (
    SimProvider("aws", _offers("aws", "us-east-1", {"H100": "12.29", "A100": "4.10",
                                                     "L40S": "2.33"}, "0.40",
                               "sim:clouds.py (catalog.json list prices; spot 40% assumed)"),
                provisioning_s=240.0, spot_mtbi_s=8 * 3600.0),
    SimProvider("gcp", _offers("gcp", "us-central1", {"H100": "11.03", "A100": "3.67",
                                                       "L40S": "2.10"}, "0.30",
                               "sim:clouds.py (catalog.json list prices; spot 30% assumed)"),
                provisioning_s=180.0, spot_mtbi_s=4 * 3600.0),
    SimProvider("lambda", _offers("lambda", "us-east-3", {"H100": "2.99", "A100": "1.79",
                                                           "L40S": "1.20"}, None,
                                  "sim:clouds.py (catalog.json list prices)"),
                provisioning_s=600.0, spot_mtbi_s=None, max_nodes=64),
)


def cloud_set(names: str) -> tuple[SimProvider, ...]:
    """`three-clouds`, or a comma-separated subset of its providers (`lambda`, `aws,gcp`)."""
    if names in ("three-clouds", "all"):
        return THREE_CLOUDS
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {p.name: p for p in THREE_CLOUDS}
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ValueError(f"unknown simulated provider(s) {', '.join(unknown) or names!r}: use "
                         f"three-clouds or a comma-separated subset of {', '.join(known)}")
    return tuple(known[n] for n in wanted)
