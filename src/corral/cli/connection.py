"""Which server and token a CLI command uses: flags, then CORRAL_URL / CORRAL_TOKEN, then the
data dir (`server.json` and `admin-token` that `corral up` wrote), then the default port."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from corral.cli.defaults import DEFAULT_PORT, DataDir, default_data_dir
from corral.sdk import Client, CorralError

__all__ = ["JsonOpt", "TokenOpt", "UrlOpt", "connect", "emit_json", "err", "friendly"]

err = Console(stderr=True)
T = TypeVar("T")

# typer reads the environment and shows the variable in --help ("env var: CORRAL_URL")
UrlOpt = Annotated[str | None, typer.Option(
    "--url", envvar="CORRAL_URL", help="server URL; default: the data dir's server.json, else "
    f"http://127.0.0.1:{DEFAULT_PORT}")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="CORRAL_TOKEN", help="API token; default: the data dir's admin-token")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def resolve(url: str | None, token: str | None, data_dir: Path | None = None) -> tuple[str, str | None]:
    dd = DataDir(data_dir or default_data_dir())
    url = url or os.environ.get("CORRAL_URL")
    if not url and dd.server_file.is_file():
        try:
            url = json.loads(dd.server_file.read_text())["url"]
        except (ValueError, KeyError):
            url = None
    token = token or os.environ.get("CORRAL_TOKEN")
    if not token and dd.admin_token.is_file():
        token = dd.admin_token.read_text().strip()
    return url or f"http://127.0.0.1:{DEFAULT_PORT}", token


def connect(url: str | None, token: str | None) -> Client:
    return Client(*resolve(url, token))


@contextmanager
def friendly() -> Iterator[None]:
    """Show a user mistake as one clear message (with its fields) and exit 1; no traceback."""
    try:
        yield
    except CorralError as e:
        err.print(f"[red]error:[/red] {e.message}", highlight=False, markup=True)
        for field, message in e.problems:
            if field and field not in e.message:
                err.print(f"  {field}: {message}", highlight=False, markup=False)
        raise typer.Exit(1) from None


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def call(fn: Callable[[], T]) -> T:
    with friendly():
        return fn()
