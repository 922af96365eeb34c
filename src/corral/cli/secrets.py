"""`corral secrets set | ls | rm`: named values a spec's env refers to, through the SDK.

    corral secrets set hf-token --queue team-a < token.txt     (or --from-file token.txt)
    printf %s "$TOKEN" | corral secrets set wandb-key -          (a global one: admins)
    corral secrets ls [--queue team-a]
    corral secrets rm hf-token --queue team-a

A value is read from a file or standard input, never from the command line: an argument would
sit in the shell's history and in every process listing on the machine. One trailing newline is
dropped (what `echo` and most editors add); ask for none with --keep-newline.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, friendly
from corral.cli.render import ago

__all__ = ["secrets_app"]

out = Console()
err = Console(stderr=True)
secrets_app = typer.Typer(no_args_is_help=True,
                          help="secrets for env: set, list, remove (values never shown)")

QueueOpt = Annotated[str | None, typer.Option(
    "--queue", "-q", help="the queue whose work may use it; none: every queue (admins)")]


def _value(source: str | None, from_file: Path | None, keep_newline: bool) -> str:
    if source not in (None, "-"):
        err.print("[red]error:[/red] give the value on standard input (`-`) or with "
                  "--from-file, never as an argument (it would stay in your shell history)")
        raise typer.Exit(2)
    if from_file is not None:
        try:
            text = from_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            err.print(f"[red]error:[/red] --from-file {from_file}: {e}")
            raise typer.Exit(2) from None
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass("value (not echoed): ")
    else:
        text = sys.stdin.read()
    if not keep_newline and text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        err.print("[red]error:[/red] the value is empty; give it on standard input or with "
                  "--from-file")
        raise typer.Exit(2)
    return text


@secrets_app.command("set")
def secrets_set(
    name: str,
    source: Annotated[str | None, typer.Argument(help="`-`: read the value from standard "
                                                      "input (the default)")] = None,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="read it from a file")]
    = None,
    keep_newline: Annotated[bool, typer.Option("--keep-newline",
                                               help="keep a trailing newline")] = False,
    queue: QueueOpt = None, url: UrlOpt = None, token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a secret (or replace its value); specs use it as env: {VAR: {secret: NAME}}."""
    value = _value(source, from_file, keep_newline)
    with friendly(), connect(url, token) as c:
        made = c.set_secret(name, value, queue=queue)
    if json_out:
        emit_json(made.model_dump())
        return
    scope = f"queue {made.queue}" if made.queue else "every queue"
    out.print(f"{'created' if made.created else 'replaced'} secret {made.name} for {scope}")


@secrets_app.command("ls")
def secrets_ls(queue: QueueOpt = None, url: UrlOpt = None, token: TokenOpt = None,
               json_out: JsonOpt = False) -> None:
    """The secrets your work may use: names and times, never values."""
    with friendly(), connect(url, token) as c:
        found = c.secrets(queue)
    if json_out:
        emit_json([s.model_dump(exclude={"created"}) for s in found])
        return
    table = Table("name", "queue", "set by", "updated")
    for s in found:
        table.add_row(s.name, s.queue or "(every queue)", s.created_by, ago(s.updated_at))
    out.print(table)


@secrets_app.command("rm")
def secrets_rm(name: str, queue: QueueOpt = None, url: UrlOpt = None,
               token: TokenOpt = None) -> None:
    """Remove a secret; submitted work that names it fails at its next launch."""
    with friendly(), connect(url, token) as c:
        c.delete_secret(name, queue=queue)
    out.print(f"removed secret {name}" + (f" of queue {queue}" if queue else ""))
