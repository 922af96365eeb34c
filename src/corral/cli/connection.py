"""Which server and token a CLI command uses: flags, then CORRAL_URL / CORRAL_TOKEN, then a data
dir named by CORRAL_DATA_DIR, then the current context (`corral login`, `corral context use`),
then `./.corral` (`server.json` and `admin-token` that `corral up` wrote), then the default port.
The rules live in `corral.sdk.config`, shared with `Client.from_env()`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from corral.cli.defaults import DEFAULT_PORT
from corral.sdk import config as sdk_config  # these two need neither httpx nor pydantic
from corral.sdk.errors import CorralError

if TYPE_CHECKING:  # imported by connect(): `--help` loads neither httpx nor pydantic (issue 14)
    from corral.sdk.client import Client

__all__ = ["JsonOpt", "TokenOpt", "UrlOpt", "connect", "emit_json", "err", "friendly"]

err = Console(stderr=True)
T = TypeVar("T")

# typer reads the environment and shows the variable in --help ("env var: CORRAL_URL")
UrlOpt = Annotated[str | None, typer.Option(
    "--url", envvar="CORRAL_URL", help="server URL; default: the current context (corral "
    f"login), else the data dir's server.json, else http://127.0.0.1:{DEFAULT_PORT}")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="CORRAL_TOKEN", help="API token; default: the current context's, else "
    "the data dir's admin-token")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


# where a URL came from (sdk_config.Resolved.source), as the user wrote it
_SOURCES = {"arguments": "--url or CORRAL_URL", "environment": "CORRAL_URL"}


def resolve(url: str | None, token: str | None, data_dir: Path | None = None) -> tuple[str, str | None]:
    with friendly():  # a config file that cannot be read, a URL that is none: one message
        found = sdk_config.resolve(url, token, data_dir=data_dir)
        checked = sdk_config.checked_url(found.url, _SOURCES.get(found.source, found.source))
    return checked, found.token


def connect(url: str | None, token: str | None) -> Client:
    from corral.sdk.client import Client

    resolved = resolve(url, token)
    with friendly():
        return Client(*resolved)


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
