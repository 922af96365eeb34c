"""`corral offers`: what providers can rent, with prices and where each price comes from.

Offline: the shipped, dated catalog (corral/providers/catalog.json). A live provider's offers
(spot prices from its API) are what the server's autoscaler reads; this command shows the
catalog, so it works with no cloud account and no server.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def offers(
    gpu: Annotated[str | None, typer.Option(help="MODEL or MODEL:COUNT, e.g. H100:8")] = None,
    spot: Annotated[bool, typer.Option(help="spot offers only")] = False,
    provider: Annotated[str | None, typer.Option(help="only this provider")] = None,
) -> None:
    """What each provider can rent, with prices per hour and per GPU-hour and their source."""
    from corral.providers.catalog import catalog

    model, count = _parse_gpu(gpu)
    console = Console()
    if spot:
        console.print("spot prices are not in the offline catalog: a provider reads them from its "
                      "API when the server runs (aws: DescribeSpotPriceHistory)")
        raise typer.Exit(0)
    rows = [e for e in catalog()
            if (model is None or e.gpu_model.lower() == model.lower())
            and (count is None or e.gpus == count)
            and (provider is None or e.provider == provider)]
    table = Table(title="offers (on-demand, offline catalog)")
    for name in ("provider", "instance type", "GPUs", "GPU mem", "vCPU", "RAM", "per hour",
                 "per GPU-hour", "region", "as of", "source"):
        table.add_column(name, overflow="fold")
    for e in sorted(rows, key=lambda e: (e.on_demand_per_hour / e.gpus, e.provider)):
        table.add_row(e.provider, e.instance_type, f"{e.gpus} x {e.gpu_model}",
                      f"{e.gpu_memory_mib // 1024} GiB", str(e.vcpus), f"{e.memory_mib // 1024} GiB",
                      f"{e.on_demand_per_hour:.2f}", f"{e.on_demand_per_hour / e.gpus:.2f}",
                      e.region, e.as_of, e.source)
    console.print(table)
    if not rows:
        console.print("no offer matches; `corral offers` lists them all")


def _parse_gpu(text: str | None) -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    model, _, count = text.partition(":")
    if not model or (count and not count.isdigit()):
        raise typer.BadParameter(f"--gpu wants MODEL or MODEL:COUNT (e.g. H100:8), got {text!r}")
    return model, int(count) if count else None
