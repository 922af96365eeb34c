"""`corral login URL` and `corral context ls|use|rm`: servers saved with their tokens, so that
every client command reaches the current one without --url/--token (precedence and file in
`corral.sdk.config`). A saved token is never printed back."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import err, friendly
from corral.cli.output import Format, OutputOpt, emit
from corral.sdk.config import (
    Config,
    ConfigError,
    Context,
    checked_url,
    config_path,
    from_data_dir,
    load_config,
    save_config,
)

__all__ = ["context_app", "login"]

out = Console()
context_app = typer.Typer(no_args_is_help=True,
                          help="saved servers (corral login): list, switch, remove")


def _default_name(url: str) -> str:
    return urlsplit(url).netloc or url


def _checked_url(url: str) -> str:
    try:
        return checked_url(url)
    except ConfigError as e:  # `http://[::1` too: urlsplit's ValueError was a traceback
        raise typer.BadParameter(e.message, param_hint="URL") from None


def _in_clear(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname not in {"127.0.0.1", "localhost", "::1"}


def _read_token(token: str | None) -> str:
    """`--token -` reads stdin (keeps it out of shell history); no --token asks without echo."""
    if token == "-":
        token = sys.stdin.readline().strip()
    elif token is None and not sys.stdin.isatty():  # a script: a prompt would read nothing
        raise typer.BadParameter("no token given and no terminal to ask on: pass --token TOKEN "
                                 "or --token - (read from stdin)", param_hint="--token")
    elif token is None:
        token = typer.prompt("token", hide_input=True)
    if not token:
        raise typer.BadParameter("the token is empty", param_hint="--token")
    return token


def login(
    url: Annotated[str | None, typer.Argument(
        help="the server, e.g. https://corral.example.com (or --data-dir)")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", help="API token; '-' reads it from stdin; omitted: asked for, not echoed "
        "(with --data-dir: the admin token there)")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="the context's name (default: the URL's host:port)")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="check the token with the server before saving")] = True,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="save the server that `corral up --data-dir DIR` runs (its URL "
        "and admin token, read from DIR) instead of a URL")] = None,
) -> None:
    """Save a server and its token as a context and make it the current one."""
    url, secret = _server(url, token, data_dir)
    name = name or _default_name(url)
    who = ""
    if verify:
        from corral.sdk.client import Client  # here: httpx and pydantic are not for --help

        with friendly(), Client(url, secret) as c:
            who = f" as {c.whoami().name}"
    with friendly():
        config = load_config()
        config.contexts[name] = Context(name, url, secret)
        config.current = name
        path = save_config(config)
    out.print(f"logged in to {url}{who}; context [bold]{name}[/bold] is current (saved in "
              f"{path})", highlight=False)


def _server(url: str | None, token: str | None, data_dir: Path | None) -> tuple[str, str]:
    """The URL and token to save: given, or what `corral up --data-dir` wrote in its dir."""
    if (url is None) == (data_dir is None):
        raise typer.BadParameter("give a server URL or --data-dir DIR (one of them)",
                                 param_hint="URL")
    if data_dir is not None:
        found, admin = from_data_dir(data_dir)
        if found is None:
            raise typer.BadParameter(
                f"{data_dir} has no server.json: is `corral up --data-dir {data_dir}` running?",
                param_hint="--data-dir")
        url = found
        if token is None and admin is not None:
            return _checked_url(url), admin
    assert url is not None
    url = _checked_url(url)
    if _in_clear(url):
        err.print(f"warning: {url} is plain http: the token crosses the network unencrypted; "
                  "use https unless this network is yours alone", highlight=False)
    return url, _read_token(token)


def _loaded() -> Config:
    with friendly():
        return load_config()


@context_app.command("ls")
def ls(output: OutputOpt = None) -> None:
    """Saved contexts; * marks the current one. Tokens are never shown."""
    config = _loaded()
    rows = sorted(config.contexts.values(), key=lambda c: c.name)
    fmt = output or Format.TABLE
    if fmt is Format.JSON:
        import json

        typer.echo(json.dumps([{"name": c.name, "url": c.url, "current": c.name == config.current,
                                "has_token": bool(c.token)} for c in rows], indent=2))
        return
    if not rows and fmt in {Format.TABLE, Format.WIDE}:
        out.print(f"no contexts yet ({config_path()}): corral login URL", highlight=False)
        return
    t = Table(title="contexts", title_justify="left")
    for col in ("CURRENT", "NAME", "URL", "TOKEN"):
        t.add_column(col, no_wrap=col in {"NAME", "URL"})
    for c in rows:
        t.add_row("*" if c.name == config.current else "", c.name, c.url,
                  "saved" if c.token else "none")
    emit(out, fmt, [], t, [c.name for c in rows])
    overridden = [v for v in ("CORRAL_URL", "CORRAL_DATA_DIR") if os.environ.get(v)]
    if overridden and fmt in {Format.TABLE, Format.WIDE}:
        err.print(f"note: {' and '.join(overridden)} set in this shell: client commands use "
                  "that, not the current context", highlight=False)


@context_app.command("use")
def use(name: Annotated[str, typer.Argument(help="a saved context")]) -> None:
    """Make NAME the current context."""
    with friendly():
        config = load_config()
        config.current = config.context(name).name
        save_config(config)
    out.print(f"context [bold]{name}[/bold] is current", highlight=False)


@context_app.command("rm")
def rm(name: Annotated[str, typer.Argument(help="a saved context")]) -> None:
    """Forget NAME and its token; the server still accepts it (corral tokens revoke)."""
    with friendly():
        config = load_config()
        config.context(name)
        del config.contexts[name]
        if config.current == name:
            config.current = None
        save_config(config)
    left = "; no context is current now" if config.current is None else ""
    out.print(f"removed context {name}{left}", highlight=False)

