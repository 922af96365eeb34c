"""`corral credits` (balance, grants, holds, history, prices; grant and transfer for admins) and
`corral usage` (GPU-hours and cost by queue, user, provider, GPU model, day; `--csv`)."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly
from corral.cli.when import past_time

if TYPE_CHECKING:  # imported by _ledger: `--help` imports neither httpx nor pydantic (issue 14)
    from corral.sdk.client import Client
    from corral.sdk.ledger import Balance, Ledger

__all__ = ["credits_app", "usage"]

out = Console()
credits_app = typer.Typer(
    no_args_is_help=False, invoke_without_command=True,
    help="credits of your queues: balance, grants, holds, history (admins: grant, transfer)")

QueueArg = Annotated[str, typer.Argument(help="queue name")]


def _when(value: str | None, field: str) -> float | None:
    """Seconds since the epoch from '1767225600', '2026-01-01' or '2026-01-01T12:00:00Z'."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time; write 2026-12-31, 2026-12-31T18:00:00Z or epoch seconds",
            param_hint=field) from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _ledger(c: Client) -> Ledger:
    from corral.sdk.ledger import Ledger

    return Ledger(c)


def _day(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _balances_table(items: list[Balance]) -> Table:
    t = Table(title="credits", title_justify="left")
    for col in ("QUEUE", "AVAILABLE", "BALANCE", "HELD", "SETTLED", "GRANTED", "EXPIRED",
                "IN", "OUT", "DEBT"):
        t.add_column(col, justify="left" if col == "QUEUE" else "right")
    for b in items:
        name = b.queue if b.metered else f"{b.queue} (unmetered)"
        t.add_row(name, b.available, b.balance, b.held, b.settled, b.granted, b.expired,
                  b.transferred_in, b.transferred_out, b.debt)
    return t


@credits_app.callback()
def credits_main(ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None,
                 json_out: JsonOpt = False) -> None:
    """Without a subcommand: the balance of every queue you may see."""
    if ctx.invoked_subcommand is None:
        balance(None, url, token, json_out)


@credits_app.command("balance")
def balance(queue: Annotated[str | None, typer.Argument(help="one queue (default: all)")] = None,
            url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Balance, available, held, settled, granted, expired and transferred credits."""
    with connect(url, token) as c, friendly():
        ledger = _ledger(c)
        items = [ledger.balance(queue)] if queue else ledger.balances()
    if json_out:
        emit_json([b.model_dump() for b in items])
    else:
        out.print(_balances_table(items))


@credits_app.command("grants")
def grants(queue: QueueArg, url: UrlOpt = None, token: TokenOpt = None,
           json_out: JsonOpt = False) -> None:
    """Credit grants of QUEUE and what is left of each."""
    with connect(url, token) as c, friendly():
        items = _ledger(c).grants(queue)
    if json_out:
        emit_json([g.model_dump() for g in items])
        return
    t = Table(title=f"grants of {queue}", title_justify="left")
    for col in ("KEY", "GRANTED", "AMOUNT", "LEFT", "EXPIRES", "MEMO"):
        t.add_column(col)
    for g in items:
        t.add_row(g.key, _day(g.at), g.amount, g.left, _day(g.expires_at), g.memo)
    out.print(t)


@credits_app.command("holds")
def holds(queue: QueueArg, all_: Annotated[bool, typer.Option(
              "--all", help="settled holds too")] = False,
          limit: Annotated[int, typer.Option("--limit", min=1, max=10_000,
                                             help="the newest this many")] = 1000,
          url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Credits held in escrow for QUEUE's running work (one hold per attempt), the newest
    --limit, in the order placed."""
    with connect(url, token) as c, friendly():
        items = _ledger(c).holds(queue, open_only=not all_, limit=limit)
    if json_out:
        emit_json([h.model_dump() for h in items])
        return
    t = Table(title=f"holds of {queue}", title_justify="left")
    for col in ("WORKLOAD", "ATTEMPT", "HELD", "PAID BY", "SINCE", "CHARGED"):
        t.add_column(col)
    for h in items:
        t.add_row(h.workload_id, str(h.attempt), h.amount, ", ".join(h.funders) or "-",
                  _day(h.placed_at), h.charged or ("open" if h.open else "-"))
    out.print(t)
    if len(items) == limit:
        out.print(f"the newest {limit:,} holds; older ones: --limit (at most 10,000)")


@credits_app.command("history")
def history(queue: QueueArg, limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
            url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """QUEUE's ledger transactions, newest first."""
    with connect(url, token) as c, friendly():
        items = _ledger(c).history(queue, limit=limit)
    if json_out:
        emit_json([e.model_dump() for e in items])
        return
    t = Table(title=f"history of {queue}", title_justify="left")
    for col in ("WHEN", "KIND", "AMOUNT", "CREDITS", "WORKLOAD", "KEY"):
        t.add_column(col, overflow="fold")
    for e in items:
        t.add_row(_day(e.at), e.kind, e.amount, e.change, e.workload or e.counterparty, e.key)
    out.print(t)


@credits_app.command("grant")
def grant(queue: QueueArg,
          amount: Annotated[str, typer.Argument(help="credits, e.g. 500 or 412.50")],
          expires: Annotated[str | None, typer.Option(
              "--expires", help="2026-12-31, an ISO time, or epoch seconds")] = None,
          key: Annotated[str | None, typer.Option(
              "--key", help="idempotency key: repeating the command grants once")] = None,
          memo: Annotated[str, typer.Option("--memo")] = "",
          url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Grant AMOUNT credits to QUEUE (admin)."""
    expires_at = _when(expires, "--expires")
    with connect(url, token) as c, friendly():
        g = _ledger(c).grant(queue, amount, expires_at=expires_at, key=key, memo=memo)
    if json_out:
        emit_json(g.model_dump())
    else:
        out.print(f"granted {g.amount} to {g.queue} (key {g.key}; expires {_day(g.expires_at)})")


@credits_app.command("transfer")
def transfer(source: Annotated[str, typer.Argument(help="from this queue")],
             target: Annotated[str, typer.Argument(help="to this queue")],
             amount: Annotated[str, typer.Argument(help="credits, e.g. 50.00")],
             key: Annotated[str | None, typer.Option("--key")] = None,
             memo: Annotated[str, typer.Option("--memo")] = "",
             url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Move AMOUNT available credits from SOURCE to TARGET (admin); they keep their expiry."""
    with connect(url, token) as c, friendly():
        e = _ledger(c).transfer(source, target, amount, key=key, memo=memo)
    out.print(f"moved {e.amount} from {source} to {target} (key {e.key})")


@credits_app.command("prices")
def prices(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Explicit price rules; nodes without one pay their own price_per_gpu_hour."""
    with connect(url, token) as c, friendly():
        items = _ledger(c).prices()
    if json_out:
        emit_json([p.model_dump() for p in items])
        return
    t = Table(title="prices per GPU-hour", title_justify="left")
    for col in ("ID", "PRICE", "PROVIDER", "REGION", "GPU", "KIND", "FROM", "UNTIL", "SOURCE"):
        t.add_column(col)
    for p in items:
        t.add_row(str(p.id), p.price_per_gpu_hour, p.provider or "*", p.region or "*",
                  p.gpu_model or "*", p.capacity_kind or "*", _day(p.valid_from),
                  _day(p.valid_until), p.source)
    out.print(t)


def usage(
    by: Annotated[list[str] | None, typer.Option(
        "--by", help="group by queue, user, provider, region, gpu_model, capacity_kind, node, "
                     "workload, day (repeat; default: queue and day)")] = None,
    queue: Annotated[list[str] | None, typer.Option("--queue", help="only these queues")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="usage from this time on (attempts are cut at the window): 1h, 2d, "
        "today, yesterday (UTC days), an ISO time or epoch seconds")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="usage before this time (same forms as --since)")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV for spreadsheets")] = False,
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """GPU-seconds, GPU-hours and cost, grouped."""
    dims = by or ["queue", "day"]
    now = time.time()  # one instant for both ends: `--since 1d --until 1h` is 23 h long
    window = {"since": past_time(since, "--since", now),
              "until": past_time(until, "--until", now)}
    with connect(url, token) as c, friendly():
        ledger = _ledger(c)
        if csv:
            typer.echo(ledger.usage_csv(by=dims, queue=queue or (), **window), nl=False)
            return
        report = ledger.usage(by=dims, queue=queue or (), **window)
    if json_out:
        emit_json(report.model_dump())
        return
    t = Table(title="usage", title_justify="left")
    for col in (*[d.upper() for d in report.by], "GPU-SECONDS", "GPU-HOURS",
                f"COST ({report.currency})"):
        t.add_column(col)
    for r in report.rows:
        t.add_row(*[r.group[d] for d in report.by], r.gpu_seconds, r.gpu_hours, r.cost)
    total_hours = (Decimal(report.total_gpu_seconds) / 3600).quantize(Decimal("0.000001"))
    t.add_row(*(["total"] + [""] * (len(report.by) - 1)), report.total_gpu_seconds,
              str(total_hours), report.total_cost)
    out.print(t)
