"""`corral submit | ls | describe | logs | cancel | why | scale | update`.

`describe`, `logs` and `cancel` take a workload id or a service id (a service's submission
group id: its replicas are the workloads `<id>-r<i>`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from corral.cli.connection import JsonOpt, TokenOpt, UrlOpt, connect, emit_json, err, friendly
from corral.cli.groups import as_group, print_group, task_ids_message
from corral.cli.output import Format, OutputOpt, chosen, emit
from corral.cli.render import ago, elastic_text, state_text, workloads_table
from corral.sdk import batch
from corral.sdk.errors import Conflict, Forbidden, NotFound

if TYPE_CHECKING:  # annotations only: `--help` imports neither httpx nor pydantic (issue 14)
    from corral.sdk import models as M
    from corral.sdk.client import Client

__all__ = ["cancel", "describe", "logs", "ls", "scale", "submit", "update", "why"]

out = Console()
LIVE = ["pending", "scheduled", "starting", "running"]
ENDED = ["succeeded", "failed", "cancelled", "preempted"]
# --state is checked here, so a typo is named as the option the user typed (with the choices),
# not as the server's query field.
def _states(values: list[str] | None) -> list[str] | None:
    if not values:
        return values
    wrong = [v for v in values if v.lower() not in LIVE + ENDED]
    if wrong:
        raise typer.BadParameter(f"{', '.join(map(repr, wrong))} is not a state; choose from "
                                 f"{', '.join(LIVE + ENDED)}")
    return [v.lower() for v in values]


def _documents(path: Path) -> list[dict[str, Any]]:
    """One workload, a list of them, or {workloads: [...]}, as YAML or JSON."""
    from corral.spec.document import read_document  # here: PyYAML is ~15 ms of every command
    from corral.spec.errors import SpecError  # and pydantic, which --help does not need

    try:
        data = read_document(path)
    except SpecError as e:
        err.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    if isinstance(data, dict) and "workloads" in data:
        data = data["workloads"]
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(d, dict) for d in items):
        err.print(f"[red]error:[/red] {path}: expected a workload (a mapping with name, queue, "
                  "command...), a list of them, or `workloads: [...]`", markup=True)
        raise typer.Exit(1)
    try:  # a YAML date, set or binary value has no JSON form: say so, no traceback
        json.dumps(items, allow_nan=False)
    except (TypeError, ValueError) as e:
        err.print(f"[red]error:[/red] {path}: {e}; write dates and other values as strings",
                  markup=True, highlight=False)
        raise typer.Exit(1) from None
    for item in items:  # a relative workdir is relative to the file (the server needs it whole)
        wd = item.get("workdir")
        if isinstance(wd, str) and wd and not Path(wd).is_absolute():
            item["workdir"] = str((path.parent / wd).resolve())
    return items


def submit(
    file: Annotated[Path, typer.Argument(help="workload spec (YAML or JSON): one workload, a "
                                         "list, or `workloads: [...]`")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="show what would happen; store nothing; exit 1 if any item would be "
        "refused")] = False,
    url: UrlOpt = None, token: TokenOpt = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="print each item's index, name and outcome (and ids) as JSON")] = False,
) -> None:
    """Submit the workloads of FILE, all or nothing: every item is checked first, and one
    refused item (named as workloads\\[i].field) submits none."""  # \\[: not rich markup
    docs = _documents(file)
    with connect(url, token) as c, friendly():
        from corral.cli.workdirs import upload_workdirs  # issue 13: agents get workdir uploaded

        upload_workdirs(c, docs)
        items = batch.check(c, docs)
        refused = [i for i in items if i.problems]
        if dry_run or refused:
            _report_checked(items, dry_run, json_out)
            if refused:
                raise typer.Exit(1)
            return
        done = list(batch.submit_all(c, docs, items))
    if json_out:
        emit_json([i.to_json() for i in items])
    for item in done:
        if item.submitted is not None and not json_out:
            ids = ", ".join(w.id for w in item.submitted.workloads)
            out.print(f"submitted [bold]{ids}[/bold] to queue "
                      f"{item.submitted.workloads[0].queue}")
    if done and done[-1].problems:
        stored = [i for i in done if i.submitted is not None]
        _print_problems(done[-1:])
        err.print(f"stopped: {len(stored)} of {len(items)} submitted before the refusal "
                  f"({', '.join(i.submitted.group_id for i in stored if i.submitted) or 'none'});"
                  " the rest were not", highlight=False)
        raise typer.Exit(1)


def _report_checked(items: list[batch.Item], dry_run: bool, json_out: bool) -> None:
    refused = [i for i in items if i.problems]
    if json_out:
        emit_json([i.to_json() for i in items])
    elif dry_run:
        for item in items:
            if item.dry_run is not None:
                _print_dry_run(item.name, item.dry_run)
    if refused:
        what = "would be refused" if dry_run else "refused: nothing submitted"
        err.print(f"[red]error:[/red] {len(refused)} of {len(items)} workload"
                  f"{'s' if len(items) != 1 else ''} {what}", markup=True, highlight=False)
        _print_problems(refused)


def _print_problems(items: list[batch.Item]) -> None:
    for item in items:
        for where, message in item.problems:
            err.print(f"  {where} ({item.name}): {message}", markup=False, highlight=False)


def _print_dry_run(name: str, r: M.DryRunResult) -> None:
    if r.outcome == "start":
        where = "; ".join(f"{uid}: " + ", ".join(f"{p['node']} GPUs {p['devices']}" for p in ps)
                          for uid, ps in r.placements.items())
        # names, devices and messages are text, not rich markup ("[0, 1]" would be eaten)
        out.print(f"{name}: would start now on {where}", markup=False, highlight=False)
        for e in r.evictions:
            out.print(f"  evicting {e['workload']} ({e['rule']}): {e['message']}",
                      markup=False, highlight=False)
    else:
        out.print(f"{name}: would {'be rejected' if r.outcome == 'rejected' else 'wait'}: "
                  f"{r.reason_code}: {r.reason_message}", markup=False, highlight=False)
    for note in r.notes:  # a service's port, probe and bounds, said before it is submitted
        out.print(f"  {note}", markup=False, highlight=False)


def ls(
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q")] = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", "-s", callback=_states, help="only these states")] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="include ended workloads")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000,  # the API's bounds
                                       help="at most this many (1-1000)")] = 50,
    group: Annotated[str | None, typer.Option(
        "--group", "-g", help="only one submission's units (an array's tasks)")] = None,
    output: OutputOpt = None,
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """List workloads, newest first (live ones unless --all or --state)."""
    states = state or (None if all_ else LIVE)
    fmt = chosen(output, json_out)
    with connect(url, token) as c, friendly():
        page = c.list(queue=queue, state=states, limit=limit, group=group)
        # said on stderr, so that -o ids and json stay clean for scripts
        ended_hidden = states is LIVE and bool(c.list(queue=queue, state=ENDED, limit=1,
                                                      group=group).items)
    emit(out, fmt, page.items, workloads_table(page.items, wide=fmt is Format.WIDE),
         [w.id for w in page.items])
    if page.next_cursor:
        err.print(f"(more: raise --limit above {limit})", style="bright_black")
    if ended_hidden:
        err.print("(ended workloads are hidden: --all or --state succeeded|failed|cancelled "
                  "shows them)", style="bright_black", highlight=False)


def describe(workload_id: str, url: UrlOpt = None, token: TokenOpt = None,
             json_out: JsonOpt = False) -> None:
    """A workload's state, placement and history; or a service's replicas."""
    with connect(url, token) as c, friendly():
        try:
            w = c.get(workload_id)
        except NotFound:
            try:
                service = _service_or(c, workload_id)
            except NotFound as missing:  # an array's group id: its tasks, as one object
                print_group(out, as_group(c, workload_id, missing), json_out)
                return
            _print_service(service, json_out)
            return
        events = c.events(workload_id).items
    attempts = attempt_rows(events)
    if json_out:
        emit_json({**w.model_dump(), "events": [e.model_dump() for e in events],
                   "attempts": attempts})
        return
    out.print(f"[bold]{w.id}[/bold]  ", state_text(w))
    for label, value in (("queue", w.queue), ("user", w.user), ("kind", w.kind),
                         ("requests", requested(w.spec)), ("priority", priority_text(w.spec)),
                         ("command", command_text(w.spec)),
                         ("attempt", f"{w.attempt} (restarts {w.restart_count})"),
                         ("submitted", ago(w.submitted_at)), ("started", ago(w.started_at)),
                         ("finished", ago(w.finished_at)), ("exit code", w.exit_code),
                         ("reason", f"{w.reason_code}: {w.reason_message}")):
        out.print(f"  {label:<10} {value}", highlight=False)
    if w.elastic is not None:
        out.print(f"  {'elastic':<10} {elastic_text(w.elastic)}", highlight=False)
    if len(attempts) > 1 or (attempts and attempts[0]["ended"] is not None):
        t = Table(title="attempts", title_justify="left")
        for col in ("ATTEMPT", "STARTED", "ENDED", "OUTCOME", "MESSAGE"):
            t.add_column(col, overflow="fold")
        for a in attempts:
            t.add_row(str(a["attempt"]), ago(a["started"]), ago(a["ended"]), a["outcome"],
                      a["message"])
        out.print(t)
    if w.placements:
        t = Table(title="placement", title_justify="left")
        for col in ("WORKER", "NODE", "GPUS", "SHARE", "STATE", "EXIT"):
            t.add_column(col)
        for p in w.placements:
            t.add_row(str(p.worker), p.node_id, ",".join(map(str, p.devices)) or "-",
                      f"{p.milli_per_device / 1000:g}", p.state, str(p.exit_code or ""))
        out.print(t)
    t = Table(title="events", title_justify="left")
    for col in ("WHEN", "CHANGE", "REASON", "MESSAGE"):
        t.add_column(col, overflow="fold")
    for e in events:
        change = f"{e.from_state or '-'} -> {e.to_state}" if e.to_state else e.kind
        t.add_row(ago(e.at), change, e.reason, e.message)
    out.print(t)


def requested(spec: dict[str, Any]) -> str:
    """What the workload asked for, as its spec said it: "2 workers x 4 GPUs (A100), cpu 8,
    memory 64GiB"."""
    workers, gpus = spec.get("workers", 1), spec.get("gpus", 0)
    text = f"{workers} worker{'s' if workers != 1 else ''} x {gpus:g} GPU{'s' if gpus != 1 else ''}"
    if spec.get("gpu_model"):
        text += f" ({spec['gpu_model']})"
    units = {"cpu": "m", "memory": "MiB", "gpu_memory": "MiB"}  # how the stored spec counts
    extras = [f"{key.replace('_', ' ')} {spec[key]}{units[key] if isinstance(spec[key], int) else ''}"
              for key in units if spec.get(key) not in (None, 0, "")]
    return ", ".join([text, *extras])


def priority_text(spec: dict[str, Any]) -> str:
    preemptible = spec.get("preemptible")
    said = "" if preemptible is None else (", preemptible" if preemptible else
                                           ", not preemptible")
    return f"{spec.get('priority', 0)}{said}"


def command_text(spec: dict[str, Any]) -> str:
    import shlex  # one call per describe: not worth every command's start-up

    if spec.get("command"):
        return shlex.join(str(a) for a in spec["command"])
    return str(spec.get("shell") or "-")


_ATTEMPT_ENDS = {"succeeded", "failed", "cancelled", "preempted", "pending"}


def attempt_rows(events: list[M.Event]) -> list[dict[str, Any]]:
    """One row per attempt, read from the events: when it was launched (`starting`), when it
    left starting or running (a restart requeues it: `pending`), and that change's reason and
    message. A worker that exits at once never shows `running`, so launch is the start; the
    event that ends an attempt may already carry the next attempt's number, so it closes the
    attempt still open."""
    rows: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for e in events:
        if e.to_state in ("starting", "running"):
            if current is None or current["attempt"] != e.attempt:
                current = rows.setdefault(e.attempt, {"attempt": e.attempt, "started": e.at,
                                                      "ended": None, "message": ""})
            current["outcome"] = e.to_state
        elif current is not None and e.from_state in ("running", "starting") and (
                e.to_state in _ATTEMPT_ENDS):
            current.update(ended=e.at, outcome=e.reason or e.to_state, message=e.message)
            current = None
    return [rows[k] for k in sorted(rows)]


def logs(
    workload_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until it ends")] = False,
    worker: Annotated[int, typer.Option("--worker", "-w")] = 0,
    tail: Annotated[int | None, typer.Option(
        "--tail", min=0, help="only the last N lines (then follow, with -f)")] = None,
    replica: Annotated[int | None, typer.Option(
        "--replica", "-r", min=0, help="a service's replica (its index)")] = None,
    attempt: Annotated[int | None, typer.Option(
        "--attempt", "-a", min=0, help="an earlier attempt's output (0 = the first launch; "
        "default: the current one), e.g. what a worker printed before a restart")] = None,
    timestamps: Annotated[bool, typer.Option(
        "--timestamps", "-t", help="begin each line with the time it was written (RFC 3339, "
        "UTC; as the worker's supervisor saw it, late by at most a second)")] = False,
    since: Annotated[str | None, typer.Option(
        "--since", help="only lines written since then: 10m, 1h, today, 2026-12-01T18:00:00Z")
    ] = None,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Print a worker's output (stdout and stderr); for a service, a replica's (--replica,
    default: the first one serving)."""
    if follow and attempt is not None:
        err.print("[red]error:[/red] --follow reads the current attempt; drop --attempt, or "
                  "drop --follow to read an earlier one", markup=True)
        raise typer.Exit(2)
    from corral.cli.log_lines import TimedLines
    from corral.cli.when import past_time

    dated = timestamps or since is not None
    lines = TimedLines(stamp=timestamps, since=past_time(since, "--since", time.time()))
    with connect(url, token) as c, friendly():
        workload_id = _logs_target(c, workload_id, replica)
        offset = 0
        text: list[str] = []
        while True:  # what there is now
            chunk = c.logs(workload_id, worker=worker, offset=offset, attempt=attempt,
                           timestamps=dated)
            if not chunk.data:
                break
            _undated(chunk, dated)
            text.append(lines.feed(chunk))
            offset = chunk.next_offset
        if not follow:
            text.append(lines.end())
        if offset == 0:  # nothing at all: say whether the worker, the attempt, the output is
            from corral.cli.log_gaps import explain_no_output  # missing (issue 14)

            explain_no_output(c.get(workload_id), worker, attempt)
        typer.echo(last_lines("".join(text), tail), nl=False)
        if follow:
            for chunk in c.follow_log_chunks(workload_id, worker=worker, offset=offset,
                                             timestamps=dated):
                _undated(chunk, dated)
                typer.echo(lines.feed(chunk), nl=False)
            typer.echo(lines.end(), nl=False)


def _undated(chunk: M.LogChunk, dated: bool) -> None:
    if dated and chunk.times is None:
        err.print("[red]error:[/red] this backend keeps no times for log lines (the local "
                  "and agent backends' workers do): drop --timestamps and --since",
                  markup=True)
        raise typer.Exit(2)


def last_lines(text: str, n: int | None) -> str:
    """The last `n` lines of `text` (all of it for None); a last line without its newline
    counts as a line."""
    if n is None:
        return text
    if n == 0:
        return ""
    return "".join(text.splitlines(keepends=True)[-n:])


def cancel(
    workload_ids: Annotated[list[str] | None, typer.Argument(
        help="workload IDs; or select with --queue and --state")] = None,
    queue: Annotated[list[str] | None, typer.Option(
        "--queue", "-q", help="cancel this queue's work (with --state: only in those states)")
    ] = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", "-s", callback=_states, help="cancel work in this state (pending, running...); default with "
        "--queue: every live state")] = None,
    group: Annotated[str | None, typer.Option(
        "--group", "-g", help="cancel one submission's live units (an array's tasks, held "
        "ones included)")] = None,
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """Cancel workloads (running workers get SIGTERM, then SIGKILL after the grace), by ID or
    by selector: `corral cancel -q team-a --state pending` (like scancel)."""
    if not workload_ids and not queue and not state and not group:
        err.print("[red]error:[/red] name the workloads: IDs, or --queue/--state (cancelling "
                  "everything takes --state explicitly)", markup=True)
        raise typer.Exit(2)
    failed = 0
    done: list[M.Workload] = []
    with connect(url, token) as c, friendly():  # the server or the token: one message
        ids = list(workload_ids or [])
        if queue or state:
            ids += [w.id for w in c.iter_workloads(queue=queue, state=state or LIVE)]
        if group:
            ids += [w.id for w in c.iter_workloads(group=group, state=LIVE)]
        if not ids:
            err.print("nothing to cancel: no workload matches", highlight=False)
        for wid in dict.fromkeys(ids):  # each once, in order
            try:
                ws = _cancel_one(c, wid)
            except (NotFound, Forbidden, Conflict) as e:  # this one; the others still go
                failed += 1
                err.print(f"{wid}: [red]not cancelled:[/red] {e.message}", markup=True,
                          highlight=False)
                continue
            done += ws
            for w in ws if not json_out else []:
                out.print(f"{w.id}: ", state_text(w))
    if json_out:
        emit_json([w.model_dump() for w in done])
    if failed:
        raise typer.Exit(1)


def why(workload_id: str, url: UrlOpt = None, token: TokenOpt = None,
        json_out: JsonOpt = False) -> None:
    """Why a workload waits (or what it is doing)."""
    with connect(url, token) as c, friendly():
        y = c.why(workload_id)
    if json_out:
        emit_json(y.model_dump())
        return
    if y.state == "pending":
        kind = "can never run as written" if y.unresolvable else "waits"
        out.print(f"{y.id} {kind}: [bold]{y.code}[/bold]: {y.message}", highlight=False)
    else:
        extra = f", stopping ({y.stopping})" if y.stopping else ""
        out.print(f"{y.id} is {y.state}{extra}: {y.code}: {y.message}", highlight=False)


def wait_until(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


# --- services ----------------------------------------------------------------------------------


def scale(
    service_id: Annotated[str, typer.Argument(help="the service's id (its submission's group id)")],
    replicas: Annotated[int, typer.Argument(min=0, help="the desired replica count")],
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """Set a service's replica count (within its spec's min_replicas and max_replicas): new
    replicas start; surplus ones are drained, the highest index first."""
    with connect(url, token) as c, friendly():
        s = c.scale(service_id, replicas)
    if json_out:
        emit_json(s.model_dump())
        return
    out.print(f"{s.id}: {s.desired} desired ({s.ready} ready, {s.starting} starting, "
              f"{s.draining} draining)", highlight=False)


def update(
    service_id: Annotated[str, typer.Argument(help="the service's id (its submission's group id)")],
    file: Annotated[Path, typer.Argument(help="the service's new spec (YAML or JSON)")],
    url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False,
) -> None:
    """Roll a service out to a new spec: new replicas start beside the old ones, which are
    drained as the new ones become ready; rolled back if the new ones never become ready."""
    docs = _documents(file)
    if len(docs) != 1:
        err.print(f"[red]error:[/red] {file}: give one service spec, not {len(docs)}",
                  markup=True, highlight=False)
        raise typer.Exit(1)
    with connect(url, token) as c, friendly():
        s = c.update_service(service_id, docs[0])
    if json_out:
        emit_json(s.model_dump())
        return
    out.print(f"{s.id}: rolling out: {s.desired} replicas ({s.ready} ready, {s.starting} "
              f"starting); `corral describe {s.id}` follows it", highlight=False)


def _service_or(c: Client, workload_id: str) -> M.Service:
    """The service `workload_id` names; the workload's NotFound when it names none (the
    message users see is about what they typed, a workload id most of the time)."""
    try:
        return c.service(workload_id)
    except NotFound:
        raise NotFound(f"workload or service {workload_id!r} does not exist or is not visible "
                       "to you; `corral ls` lists yours", status=404, code="not_found") from None


def _cancel_one(c: Client, workload_id: str) -> list[M.Workload]:
    """Cancel a workload, every replica of a service (reported as its first replica), or
    every live task of an array named by its group id."""
    try:
        return [c.cancel(workload_id)]
    except NotFound:
        try:
            service = _service_or(c, workload_id)
        except NotFound as e:
            as_group(c, workload_id, e)  # an array's group id, or the workload's NotFound
            return c.cancel_group(workload_id).workloads
    service = c.cancel_service(service.id)
    return [c.get(service.replicas[0].id)]


def _logs_target(c: Client, workload_id: str, replica: int | None) -> str:
    """The workload whose logs to read: `workload_id`, or a replica of the service it names."""
    if replica is None:
        try:
            c.get(workload_id)
            return workload_id
        except NotFound:
            pass
    try:
        s = _service_or(c, workload_id)
    except NotFound as e:
        if replica is not None:
            raise
        group = as_group(c, workload_id, e)  # an array: whose output is ambiguous
        raise NotFound(task_ids_message(group), status=404, code="not_found") from None
    if replica is not None:
        found = [r for r in s.replicas if r.index == replica]
        if not found:
            raise NotFound(f"service {s.id} has no replica {replica}; its replicas: "
                           f"{', '.join(str(r.index) for r in s.replicas)}", status=404,
                           code="not_found")
        return found[0].id
    serving = [r for r in s.replicas if r.state == "ready"] or s.replicas
    return serving[0].id


def _print_service(s: M.Service, json_out: bool) -> None:
    if json_out:
        emit_json(s.model_dump())
        return
    out.print(f"[bold]{s.id}[/bold]  service, {s.state}")
    for label, value in (("queue", s.queue), ("user", s.user),
                         ("replicas", f"{s.desired} desired: {s.ready} ready, {s.starting} "
                                      f"starting, {s.draining} draining (min {s.min_replicas}, "
                                      f"max {s.max_replicas})"),
                         ("used", f"{s.replica_hours:.3f} replica-hours, {s.gpu_hours} "
                                  f"GPU-hours, cost {s.cost or '-'}")):
        out.print(f"  {label:<10} {value}", highlight=False)
    t = Table(title="replicas", title_justify="left")
    for col in ("REPLICA", "ID", "STATE", "WORKLOAD", "NODE", "URL", "RESTARTS", "REASON"):
        t.add_column(col, overflow="fold")
    for r in s.replicas:
        if r.state == "ended":
            continue
        t.add_row(str(r.index), r.id, r.state, r.workload_state, r.node_id or "-", r.url or "-",
                  str(r.restart_count), f"{r.reason_code}: {r.reason_message}")
    out.print(t)
    if s.events:  # scale changes, by hand or by its autoscaler with the reason
        t = Table(title="scaling", title_justify="left")
        for col in ("WHEN", "BY", "REASON", "MESSAGE"):
            t.add_column(col, overflow="fold")
        for e in s.events:
            t.add_row(ago(e.at), e.subject or "-", e.reason, e.message)
        out.print(t)
