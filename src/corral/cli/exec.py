"""`corral exec ID [--worker N] [--timeout S] -- CMD ARGS...`: run a command beside a running
worker (its environment, working directory and user) and print what it wrote; the exit status
is the command's (124 when it was killed at the timeout, as `timeout(1)`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from corral.cli.connection import TokenOpt, UrlOpt, connect, friendly

__all__ = ["exec_command"]


def exec_command(
    workload_id: str,
    command: Annotated[list[str], typer.Argument(help="the program and its arguments, after --")],
    worker: Annotated[int, typer.Option("--worker", "-w", help="which worker of the gang")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds, at most 120")] = 30.0,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Run a command beside a running worker (no terminal); exits with its status."""
    with connect(url, token) as c, friendly():
        done = c._call("POST", f"/v1/workloads/{workload_id}/exec",
                       json={"argv": command, "worker": worker, "timeout_s": timeout}).json()
    sys.stdout.write(done["stdout"])
    sys.stderr.write(done["stderr"])
    if done["truncated"]:
        sys.stderr.write("(output cut at 1 MiB per stream)\n")
    if done["timed_out"]:
        sys.stderr.write(f"(killed after {timeout:g}s)\n")
        raise typer.Exit(124)
    raise typer.Exit(done["exit_code"])
