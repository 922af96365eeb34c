"""An array (one submission's units: its tasks) as one object for `describe`, `cancel` and
`logs`, by its group id, as a service is by its id (issue 14).

`corral submit examples/sweep.yaml` prints the tasks' ids, `<group>-0` .. `<group>-5`; the
group id is what a person copies next. A command given an id that is neither a workload nor a
service asks for the group once, only then (the common case costs nothing more):

    describe GROUP   the tasks' states counted, then the tasks (one row each)
    cancel GROUP     every live task (as `cancel -g GROUP`)
    logs GROUP       an error naming the tasks: whose output is ambiguous
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console

from corral.cli.connection import emit_json
from corral.cli.output import Format, emit
from corral.cli.render import workloads_table
from corral.sdk.errors import NotFound

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic
    from corral.sdk import models as M
    from corral.sdk.client import Client

__all__ = ["as_group", "print_group", "task_ids_message"]


def as_group(c: Client, group_id: str, error: NotFound) -> M.Submitted:
    """The submission `group_id` names; `error` (the caller's, about what the user typed)
    when it names none."""
    try:
        return c.group(group_id)
    except NotFound:
        raise error from None


def print_group(out: Console, g: M.Submitted, json_out: bool) -> None:
    if json_out:
        emit_json(g.model_dump())
        return
    states = Counter(w.state for w in g.workloads)
    counted = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    out.print(f"[bold]{g.group_id}[/bold]  array of {len(g.workloads)} tasks: {counted}",
              highlight=False)
    if g.workloads:
        first = g.workloads[0]
        out.print(f"  queue      {first.queue}\n  user       {first.user}", highlight=False)
    emit(out, Format.TABLE, g.workloads, workloads_table(g.workloads, title="tasks"),
         [w.id for w in g.workloads])


def task_ids_message(g: M.Submitted) -> str:
    ids = [w.id for w in g.workloads]
    shown = ", ".join(ids[:3]) + (f" ... {ids[-1]}" if len(ids) > 3 else "")
    return (f"{g.group_id} is an array of {len(ids)} tasks: name one ({shown}); "
            f"`corral ls -g {g.group_id}` lists them")
