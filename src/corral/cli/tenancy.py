"""`corral users | tokens | members | audit | whoami`: who may use corral, through the SDK.

    corral users add ann --queue team-a          prints ann's first token (once)
    corral users ls | rm ann
    corral tokens create --name ci --expires 30d [--user ann] [--rate 200 --burst 500]
    corral tokens ls [--user ann] | revoke 12
    corral members add team-a ann --role viewer   (queue_admin | member | viewer)
    corral members ls team-a | rm team-a ann
    corral audit [--actor root] [--action user.delete]
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly
from corral.cli.render import ago

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic (issue 14)
    from corral.sdk import models as M

__all__ = ["audit", "members_app", "tokens_app", "users_app", "whoami"]

out = Console()
users_app = typer.Typer(no_args_is_help=True, help="users (admins): add, list, remove")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke")
members_app = typer.Typer(no_args_is_help=True, help="queue members and their roles")

RoleOpt = Annotated[str, typer.Option("--role", help="queue_admin, member or viewer")]


def _emit(json_out: bool, data: object, table: Table) -> None:
    if json_out:
        emit_json(data)
    else:
        out.print(table)


# --- users --------------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: str,
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q",
                                                    help="a queue to join as member")] = None,
    role: Annotated[str, typer.Option("--role", help="user or admin")] = "user",
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """Create a user; prints their first API token, shown only this once."""
    with friendly(), connect(url, token) as c:
        made = c.create_user(name, role=role, queues=queue or [])
    if json_out:
        emit_json(made.model_dump())
        return
    out.print(f"created {made.user.name} ({made.user.role}) in {', '.join(made.user.queues) or 'no queue'}")
    out.print("token (shown once, store it safely):", highlight=False)
    typer.echo(made.token)


@users_app.command("ls")
def users_ls(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Every user, their role and their role in each queue."""
    with friendly(), connect(url, token) as c:
        found = c.users()
    table = Table("user", "role", "queues")
    for u in found:
        table.add_row(u.name, u.role, ", ".join(f"{q} ({r})" for q, r in u.memberships.items()))
    _emit(json_out, [u.model_dump() for u in found], table)


@users_app.command("rm")
def users_rm(name: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Remove a user: their tokens stop working at once; their workloads stay."""
    with friendly(), connect(url, token) as c:
        c.delete_user(name)
    out.print(f"removed {name}")


# --- tokens -------------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="what it is for")] = "",
    user: Annotated[str | None, typer.Option("--user", help="whose (admins); default: yours")]
    = None,
    expires: Annotated[str | None, typer.Option("--expires", help="e.g. 12h, 30d; default: never")]
    = None,
    rate: Annotated[float | None, typer.Option("--rate", help="requests/s (above the server's "
                                               "default: admins only; 0: unlimited)")] = None,
    burst: Annotated[int | None, typer.Option("--burst", help="requests at once")] = None,
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """Create an API token; prints it, shown only this once."""
    from corral.spec.quantities import parse_duration_s  # pydantic: when the command runs

    try:
        expires_in = parse_duration_s(expires) if expires is not None else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--expires") from None
    with friendly(), connect(url, token) as c:
        made = c.create_token(user=user, name=name, expires_in_s=expires_in, rate_per_s=rate,
                              burst=burst)
    if json_out:
        emit_json(made.model_dump())
        return
    out.print(f"token {made.info.id} for {made.info.user} (shown once, store it safely):")
    typer.echo(made.token)


@tokens_app.command("ls")
def tokens_ls(user: Annotated[str | None, typer.Option("--user")] = None, url: UrlOpt = None,
              token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Your tokens (admins: everyone's); never the tokens themselves."""
    with friendly(), connect(url, token) as c:
        found = c.tokens(user)
    table = Table("id", "user", "name", "ends in", "created", "expires", "state", "rate/s")
    for t in found:
        table.add_row(str(t.id), t.user, t.name, f"...{t.hint}", ago(t.created_at),
                      "never" if t.expires_at is None else _when(t),
                      "revoked" if t.revoked else "active",
                      "default" if t.rate_per_s is None else f"{t.rate_per_s:g}")
    _emit(json_out, [t.model_dump() for t in found], table)


def _when(t: M.TokenInfo) -> str:
    left = (t.expires_at or 0) - time.time()
    return "expired" if left <= 0 else f"in {left / 86400:.1f} d"


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Revoke a token by its id (`corral tokens ls`); refused from the next request on."""
    with friendly(), connect(url, token) as c:
        c.revoke_token(token_id)
    out.print(f"revoked token {token_id}")


# --- members ------------------------------------------------------------------------------------


@members_app.command("add")
def members_add(queue: str, user: str, role: RoleOpt = "member", url: UrlOpt = None,
                token: TokenOpt = None) -> None:
    """Put a user in a queue, or change their role there (admins and the queue's admins)."""
    with friendly(), connect(url, token) as c:
        m = c.add_member(queue, user, role)
    out.print(f"{m.user} is a {m.role} of {m.queue}")


@members_app.command("rm")
def members_rm(queue: str, user: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Take a user out of a queue; their workloads stay."""
    with friendly(), connect(url, token) as c:
        c.remove_member(queue, user)
    out.print(f"{user} is no longer in {queue}")


@members_app.command("ls")
def members_ls(queue: str, url: UrlOpt = None, token: TokenOpt = None,
               json_out: JsonOpt = False) -> None:
    """Members of a queue and their roles."""
    with friendly(), connect(url, token) as c:
        found = c.members(queue)
    table = Table("user", "role")
    for m in found:
        table.add_row(m.user, m.role)
    _emit(json_out, [m.model_dump() for m in found], table)


# --- audit, whoami ------------------------------------------------------------------------------


def audit(actor: Annotated[str | None, typer.Option("--actor")] = None,
          action: Annotated[str | None, typer.Option("--action", help="e.g. user.delete")] = None,
          after: Annotated[int, typer.Option("--after", min=0, help="entries after this id")] = 0,
          limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 200,
          url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """The audit log (admins): admin actions and actions on other users' work."""
    with friendly(), connect(url, token) as c:
        page = c.audit(after=after, actor=actor, action=action, limit=limit)
    table = Table("id", "when", "who", "action", "target", "queue", "detail")
    for e in page.items:
        table.add_row(str(e.id), ago(e.at), e.actor, e.action, e.target, e.queue,
                      ", ".join(f"{k}={v}" for k, v in e.detail.items()))
    _emit(json_out, page.model_dump(), table)


def whoami(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Who this token is: name, role, and role in each queue."""
    with friendly(), connect(url, token) as c:
        me = c.whoami()
    if json_out:
        emit_json(me.model_dump())
        return
    roles = ", ".join(f"{q} ({r})" for q, r in me.memberships.items()) or "no queue"
    out.print(f"{me.name} ({me.role}): {roles}", highlight=False)
