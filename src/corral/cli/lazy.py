"""Commands whose module is imported only when they run.

`corral up`, `db`, `plan` and `simulate` need the server stack or the scheduling core (FastAPI,
SQLAlchemy, numpy: seconds to import); every other command is a client of the API and needs
httpx, typer and rich only. The group lists the lazy commands in `--help` from a name and a
line of help kept here, and imports a command's module when it is resolved to run (or to show
its own help).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click as click  # typer 0.29 vendors click: the classes TyperGroup is made of
from typer.core import TyperCommand, TyperGroup

__all__ = ["LAZY_COMMANDS", "LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    module: str
    attribute: str  # a Typer app (a command group) or a command function
    help: str


LAZY_COMMANDS: dict[str, LazyCommand] = {
    "up": LazyCommand("corral.cli.up", "up", "Start the control plane: store, scheduler loop, "
                      "a backend (local by default) and API."),
    "db": LazyCommand("corral.cli.up", "db_app", "database maintenance"),
    "plan": LazyCommand("corral.cli.plan", "plan_command", "A dry run of one scheduling cycle "
                        "for a pool file and a workloads file, printed as tables."),
    "simulate": LazyCommand("corral.cli.simulate", "app",
                            "replay cluster traces through the scheduling core"),
    "init": LazyCommand("corral.cli.init", "init_app", "Write a starting workload file from "
                        "flags (corral init job)."),
    "schema": LazyCommand("corral.cli.schema", "schema_command", "Print the JSON Schema of a "
                          "workload file or a pool file (for editor completion)."),
}


def load(name: str, lazy: LazyCommand) -> click.Command:
    try:
        module = importlib.import_module(lazy.module)
    except ModuleNotFoundError as e:  # the base install is the client: say what to install
        if e.name is None or e.name.split(".")[0] == "corral":
            raise
        typer.echo(f"error: `corral {name}` needs the server's libraries ({e.name} is not "
                   "installed): pip install 'corral[server]'", err=True)
        raise typer.Exit(2) from None
    target: Any = getattr(module, lazy.attribute)
    command: click.Command
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:  # a function: a one-command app is that command
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The top-level group: client commands registered as usual, the lazy ones by name; all
    listed in alphabetical order."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = LAZY_COMMANDS.get(cmd_name)
        if lazy is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the group's help: a name and a line, nothing imported
            return TyperCommand(cmd_name, help=lazy.help, short_help=lazy.help)
        self.commands[cmd_name] = load(cmd_name, lazy)
        return self.commands[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
