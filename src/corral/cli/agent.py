"""`corral agent` (run on each host) and `corral agent-tokens` (admins make join tokens).

    corral agent-tokens create --uses 2 --name rack-1     prints a join token, once
    corral agent-tokens ls | revoke 3

`corral agent` itself is `corral.agent.command` (it imports nothing of the server).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly

__all__ = ["agent_tokens_app"]

out = Console()
agent_tokens_app = typer.Typer(no_args_is_help=True,
                               help="join tokens for `corral agent` (admins)")


def _call(method: str, path: str, url: str | None, token: str | None, **kw: Any) -> Any:
    with friendly(), connect(url, token) as c:
        return c._call(method, path, **kw).json()


@agent_tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="what the token is for")] = "",
    uses: Annotated[int, typer.Option("--uses", min=1, help="how many hosts may join with it")] = 1,
    expires: Annotated[str | None, typer.Option("--expires", help="e.g. 1h, 7d")] = None,
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """Make a join token; it is printed this once (corral keeps only its digest)."""
    from corral.spec.quantities import parse_duration_s

    body: dict[str, Any] = {"name": name, "uses": uses}
    if expires is not None:
        body["expires_in_s"] = parse_duration_s(expires)
    made = _call("POST", "/v1/agent-tokens", url, token, json=body)
    if json_out:
        emit_json(made)
        return
    out.print(f"join token {made['id']} ({uses} use{'s' if uses != 1 else ''}), shown once:")
    typer.echo(made["token"])


@agent_tokens_app.command("ls")
def tokens_ls(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """List join tokens (never their secrets)."""
    rows = _call("GET", "/v1/agent-tokens", url, token)
    if json_out:
        emit_json(rows)
        return
    table = Table("id", "name", "hint", "uses left", "revoked", "by")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], "..." + r["hint"], str(r["uses_left"]),
                      "yes" if r["revoked"] else "", r["created_by"])
    out.print(table)


@agent_tokens_app.command("revoke")
def tokens_revoke(token_id: int, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """No more joins with this token (hosts that joined keep working)."""
    _call("POST", f"/v1/agent-tokens/{token_id}/revoke", url, token)
    out.print(f"join token {token_id} revoked")
