"""`corral queues | nodes | providers | cordon | uncordon | top`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly
from corral.cli.output import Format, OutputOpt, chosen, emit
from corral.cli.render import (
    devices_table,
    nodes_table,
    providers_table,
    queues_table,
    workloads_table,
)

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic (issue 14)
    from pydantic import BaseModel

    from corral.sdk.client import Client

__all__ = ["cordon", "nodes", "providers", "queues", "top", "uncordon"]

out = Console()
M = TypeVar("M", bound="BaseModel")


def queues(output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           json_out: JsonOpt = False) -> None:
    """Queues: quota, limit, GPUs in use, running and pending work."""
    _show(url, token, chosen(output, json_out), lambda c: c.queues(), queues_table, "name")


def nodes(output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          json_out: JsonOpt = False) -> None:
    """Nodes of the pool: their GPUs allocated and measured in use (USE: the mean of the
    node's sampled GPUs, "-" when no recent sample; a GPU held by work under 10% busy is
    "held, barely used"); -o wide adds each GPU's sample."""
    fmt = chosen(output, json_out)
    with connect(url, token) as c, friendly():
        items = c.nodes()
    emit(out, fmt, items, nodes_table(items), [n.id for n in items])
    if fmt is Format.WIDE:  # each device's sample, one row per GPU, under the nodes
        emit(out, fmt, [], devices_table(items), [])


def providers(output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None,
              json_out: JsonOpt = False) -> None:
    """Providers of the pool: kinds, regions, GPUs per model, allocated / idle / unavailable
    GPUs and the price range."""
    _show(url, token, chosen(output, json_out), lambda c: c.providers(), providers_table, "name")


def _show(url: str | None, token: str | None, fmt: Format,
          fetch: Callable[[Client], list[M]], table: Callable[[list[M]], Table],
          key: str) -> None:
    """One listing: fetched from the server, printed in the format asked for."""
    with connect(url, token) as c, friendly():
        items = fetch(c)
    emit(out, fmt, items, table(items), [str(getattr(i, key)) for i in items])


def cordon(node_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """No new work on NODE (admin)."""
    with connect(url, token) as c, friendly():
        n = c.cordon(node_id)
    out.print(f"{n.id} cordoned")


def uncordon(node_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Allow new work on NODE again (admin)."""
    with connect(url, token) as c, friendly():
        n = c.uncordon(node_id)
    out.print(f"{n.id} uncordoned")


def top(
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.2)] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """A live view of nodes, GPUs, queues and live work (Ctrl-C to leave)."""
    with connect(url, token) as c, friendly():
        def frame() -> Group:
            live = c.list(state=["pending", "scheduled", "starting", "running"], limit=30)
            return Group(nodes_table(c.nodes()), queues_table(c.queues()),
                         workloads_table(live.items, "live work"))

        if json_out:
            emit_json({"nodes": [n.model_dump() for n in c.nodes()],
                       "queues": [q.model_dump() for q in c.queues()]})
            return
        if once:
            out.print(frame())
            return
        try:
            with Live(frame(), console=out, refresh_per_second=4, screen=False) as view:
                while True:
                    time.sleep(interval)
                    view.update(frame())
        except KeyboardInterrupt:
            pass
