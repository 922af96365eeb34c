"""`corral deliveries ID`: the delivery log of a workload's `notify` webhooks (or, with
--group, of every task of an array): URL, event, state, attempts and the last answer."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly
from corral.cli.render import ago

__all__ = ["deliveries"]

out = Console()


def deliveries(
    workload_id: str, url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
    group: Annotated[bool, typer.Option("--group", help="ID is a group id (an array): every "
                                        "task's deliveries")] = False,
) -> None:
    """A workload's webhook deliveries (notify): state, attempts, last answer."""
    with connect(url, token) as c, friendly():
        page = c.deliveries(workload_id, group=group)
    if json_out:
        emit_json(page.model_dump())
        return
    t = Table(title="webhook deliveries", title_justify="left")
    for col in ("ID", "WHEN", "EVENT", "URL", "STATE", "TRIES", "LAST", "NEXT"):
        t.add_column(col, overflow="fold")
    for d in page.items:
        last = str(d.last_status or "") + (f" {d.last_error}" if d.last_error else "")
        t.add_row(str(d.id), ago(d.created_at), d.event, d.url, d.state, str(d.attempts),
                  last.strip() or "-", ago(d.next_at) if d.next_at is not None else "-")
    out.print(t)
    if not page.items:
        out.print("(none: the workload has no notify, or nothing it subscribed to happened)",
                  style="bright_black")
