"""`corral offers`: what providers can rent, with prices and where each price comes from.

Offline: the shipped, dated catalog (corral/providers/catalog.json). A live provider's offers
(spot prices from its API) are what the server's autoscaler reads; this command shows the
catalog, so it works with no cloud account and no server.

`corral providers [ls | add FILE | rm NAME]`: the pool's providers, and renting ones (aws, ssh)
added and removed at run time through the server (`corral.api.providers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly
from corral.cli.output import OutputOpt


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


# --- corral providers [ls | add FILE | rm NAME] ---------------------------------------------
providers_app = typer.Typer(help="Providers of the pool; add and remove renting ones at run "
                            "time (admin).", no_args_is_help=False)


@providers_app.callback(invoke_without_command=True)
def providers_summary(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
                      token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Providers of the pool: kinds, regions, GPUs per model, allocated / idle / unavailable
    GPUs and the price range (`corral providers ls`: the renting ones as declared)."""
    if ctx.invoked_subcommand is None:
        from corral.cli.cluster import providers

        providers(output, url, token, json_out)


@providers_app.command("ls")
def providers_ls(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """The renting providers (aws, ssh) as declared, and where each is in its life (admin)."""
    with connect(url, token) as c, friendly():
        items = c.declared_providers()
    if json_out:
        emit_json([i.model_dump(mode="json") for i in items])
        return
    table = Table(title="renting providers")
    for name in ("name", "kind", "origin", "lifecycle", "region", "min", "max",
                 "max spend/h"):
        table.add_column(name)
    for i in items:
        table.add_row(i.name, i.kind, i.origin, i.lifecycle, i.region, str(i.min_nodes),
                      "-" if i.max_nodes is None else str(i.max_nodes),
                      "-" if i.max_spend_per_hour is None else f"{i.max_spend_per_hour:g}")
    Console().print(table)


@providers_app.command("add")
def providers_add(file: Annotated[Path, typer.Argument(help="YAML: one provider, as in the "
                                                       "pool file's providers: list")],
                  url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Add renting providers (kind aws or ssh) without a restart (admin). FILE holds one
    provider mapping, a list of them, or a pool file's `providers:` list."""
    specs = _provider_specs(file)
    with connect(url, token) as c, friendly():
        for spec in specs:
            added = c.add_provider(spec)
            Console().print(f"provider {added.name} ({added.kind}) added; the autoscaler rents "
                            "from it at its next pass")


@providers_app.command("rm")
def providers_rm(name: str,
                 force: Annotated[bool, typer.Option(
                     "--force", help="stop all its work now (requeued elsewhere from its "
                     "checkpoint, no restart spent), then return its instances")] = False,
                 timeout: Annotated[str | None, typer.Option(
                     "--timeout", help="e.g. 30m: work still running then is stopped and "
                     "its instances returned (default: wait for it)")] = None,
                 url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Remove a renting provider (admin): its nodes drain (preemptible work is requeued
    elsewhere from its checkpoint; other work runs to its end, or until --timeout), then its
    capacity is returned. It stays removed across restarts even if the pool file declares it;
    `corral providers add` brings it back."""
    from corral.spec.quantities import parse_duration_s

    try:
        timeout_s = None if timeout is None else parse_duration_s(timeout)
    except ValueError as e:
        raise typer.BadParameter(f"--timeout: {e}") from None
    with connect(url, token) as c, friendly():
        gone = c.remove_provider(name, force=force, timeout_s=timeout_s)
    when = ("its work is stopped now" if force else "" if timeout_s is None
            else f"work still running in {timeout} is stopped")
    Console().print(f"provider {gone.name} is {gone.lifecycle}: draining"
                    + (f" ({when})" if when else "") + ", then its instances are returned "
                    "(`corral providers ls` shows when it is removed)")


def _provider_specs(file: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise typer.BadParameter(f"{file}: {e}") from None
    if isinstance(data, dict) and "providers" in data:
        data = data["providers"]
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, dict) for i in items):
        raise typer.BadParameter(f"{file}: a provider mapping (name, kind, settings...) or a "
                                 "list of them")
    return items
