"""`corral init job`: a workload file written from flags, every field commented, validated
before it is written (so what it writes is accepted by `corral submit`).

    corral init job train --queue research --gpus 8 --workers 2 -- python train.py --lr 3e-4

The commented lines name the fields most first jobs want next (checkpoints, restarts, a
deadline, GPU models); `corral schema workload` has them all, for an editor's completion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corral.cli.connection import err

__all__ = ["init_app", "job_file"]

init_app = typer.Typer(no_args_is_help=True,
                       help="Write a starting workload file from flags (corral init job).")


def _scalar(value: object) -> str:
    """A YAML value in JSON's form (flow style), which YAML reads back as the same value."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value)


def job_file(name: str, queue: str, command: list[str], *, gpus: float, workers: int,
             cpu: float, memory: str, priority: int, preemptible: bool | None,
             checkpoint_dir: str | None, max_runtime: str | None) -> str:
    """The file's text: the fields set, then commented ones a first job most often wants."""
    rows: list[tuple[str, object, str]] = [
        ("queue", queue, "`corral queues` lists them"),
        ("workers", workers, "a gang: all start together or none"),
        ("gpus", gpus, "per worker; 0.25 shares a GPU"),
        ("cpu", cpu, "cores per worker"),
        ("memory", memory, "RAM per worker"),
        ("priority", priority, "-1000..1000: higher goes first in its queue"),
        ("preemptible", preemptible, "may be stopped (SIGTERM, then a deadline) for other work"),
        ("command", command, "no shell; `shell: \"...\"` for one"),
        ("checkpoint_dir", checkpoint_dir, "kept across restarts (CORRAL_RESUME_FROM)"),
        ("max_runtime", max_runtime, "stopped after this long, e.g. 12h"),
        ("max_restarts", None, "after a failure or a lost node (default 3)"),
        ("restart_on", None, "which exits are retried, e.g. [{exit_code: [3]}]"),
        ("gpu_models", None, "only these, e.g. [H100, A100]"),
        ("env", None, "the worker's environment, e.g. {WANDB_PROJECT: demo}"),
        ("working_dir", None, "the command's directory on the host"),
    ]
    lines = [
        "# A corral workload (docs/specs.md; `corral schema workload` for editor completion).",
        "# Submit it: corral submit FILE (--dry-run first says where it would run, or why not).",
        "# Written by `corral init job`: uncomment what you need.",
        "workloads:",
        f"  - name: {_scalar(name)}",
    ]
    for field, value, comment in rows:
        text = f"{field}: {_scalar(value)}" if value is not None else f"# {field}: ..."
        lines.append(f"    {text:<44} # {comment}")
    return "\n".join(lines) + "\n"


@init_app.command("job")
def job(
    name: Annotated[str, typer.Argument(help="the job's name")],
    command: Annotated[list[str], typer.Argument(help="the command, after -- (e.g. -- python "
                                                 "train.py --lr 3e-4)")],
    queue: Annotated[str, typer.Option("--queue", "-q", help="the queue it runs in")] = "default",
    gpus: Annotated[float, typer.Option("--gpus", min=0, help="GPUs per worker")] = 1,
    workers: Annotated[int, typer.Option("--workers", "-n", min=1, help="workers (a gang)")] = 1,
    cpu: Annotated[float, typer.Option("--cpu", min=0, help="CPU cores per worker")] = 1,
    memory: Annotated[str, typer.Option("--memory", help="RAM per worker, e.g. 16GiB")] = "2GiB",
    priority: Annotated[int, typer.Option("--priority", min=-1000, max=1000)] = 0,
    preemptible: Annotated[bool | None, typer.Option(
        "--preemptible/--not-preemptible", help="default: as the queue and kind decide")] = None,
    checkpoint_dir: Annotated[str | None, typer.Option("--checkpoint-dir")] = None,
    max_runtime: Annotated[str | None, typer.Option("--max-runtime", help="e.g. 12h")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="write here (refuses to overwrite); default: print it")] = None,
) -> None:
    """Write a job's workload file from flags, with the fields a first job wants next
    commented in; checked as `corral submit` checks it before it is written."""
    text = job_file(name, queue, command, gpus=gpus, workers=workers, cpu=cpu, memory=memory,
                    priority=priority, preemptible=preemptible, checkpoint_dir=checkpoint_dir,
                    max_runtime=max_runtime)
    _check(text)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        with open(output, "x") as f:
            f.write(text)
    except FileExistsError:
        err.print(f"[red]error:[/red] {output} exists: choose another --output or remove it",
                  markup=True, highlight=False)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}; submit it with: corral submit {output}")


def _check(text: str) -> None:
    import yaml  # here: PyYAML and the spec models only for this command

    from corral.spec import SpecError
    from corral.spec.workload import WorkloadSpec

    try:
        for item in yaml.safe_load(text)["workloads"]:
            WorkloadSpec.model_validate(item)
    except (SpecError, ValueError) as e:
        err.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None
