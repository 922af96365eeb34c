"""What `corral logs` says when it has nothing to print (issue 14).

The API answers an empty chunk for a worker that does not exist, an attempt that never ran and
work not launched yet alike (nothing to show is not an error for a poller). A person reading an
empty screen cannot tell "no such worker" from "not started" from "printed nothing", so the CLI
asks for the workload once, only when the output was empty, and says which:

    no such worker or attempt   error naming the ones that exist, exit 2 (a wrong flag)
    pending, scheduled          a note on stderr with the reason it waits, exit 0
    starting                    a note on stderr, exit 0
    anything else               a note that it printed nothing yet, exit 0

Notes go to stderr, so a script reading stdout still gets exactly the output (none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from corral.cli.connection import err

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic
    from corral.sdk import models as M

__all__ = ["explain_no_output", "worker_count"]

_WAITING = ("pending", "scheduled")


def worker_count(w: M.Workload) -> int:
    """Workers the workload has: its spec's, or more where its placements say so."""
    placed = max((p.worker + 1 for p in w.placements), default=0)
    return max(int(w.spec.get("workers", 1) or 1), placed)


def explain_no_output(w: M.Workload, worker: int, attempt: int | None) -> None:
    """Say why there was no output (see the module docstring); raises typer.Exit(2) for a
    worker or attempt the workload does not have."""
    workers = worker_count(w)
    if worker >= workers:
        _refuse(f"{w.id} has {_range('worker', workers)}: no worker {worker} (--worker)")
    if attempt is not None and attempt > w.attempt:
        _refuse(f"{w.id} has {_range('attempt', w.attempt + 1)} so far: no attempt {attempt} "
                "(--attempt; 0 is the first launch)")
    if w.state in _WAITING:
        why = f"{w.reason_code}: {w.reason_message}" if w.reason_code else "no reason yet"
        _note(f"no output: {w.id} is {w.state}, not launched yet ({why}); "
              "`corral why` explains, `corral logs -f` waits for it")
    elif w.state == "starting":
        _note(f"no output yet: {w.id} is starting")
    else:
        _note(f"no output: worker {worker} of {w.id} ({w.state}) printed nothing"
              + ("" if attempt is None else f" in attempt {attempt}"))


def _range(what: str, n: int) -> str:
    return f"1 {what} (0)" if n == 1 else f"{n} {what}s (0-{n - 1})"


def _refuse(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(2)


def _note(message: str) -> None:
    err.print(f"({message})", markup=False, highlight=False)
