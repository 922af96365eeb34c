"""`corral up`, `corral db upgrade`; `corral up --demo` runs the story of corral.cli.demo."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from corral.backends.worker_users import WorkerUserError, interpreter_problem
from corral.cli.connection import err
from corral.cli.defaults import DEFAULT_GPU_PROBE_INTERVAL_S, DEFAULT_PORT
from corral.cli.demo import demo_pool_file, submit_demo
from corral.cli.server import (
    Composed,
    DataDir,
    ServerConfig,
    default_data_dir,
    serve,
    worker_users,
)
from corral.control.endpoints import port_base
from corral.spec import SpecError
from corral.store import Store
from corral.store.database import current_revision, sqlite_url

__all__ = ["db_app", "up"]

out = Console()
db_app = typer.Typer(no_args_is_help=True, help="database maintenance")

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="where state lives [env: CORRAL_DATA_DIR; default ./.corral]")]
DbOpt = Annotated[str | None, typer.Option(
    "--db", help="database URL (postgresql://...); default: SQLite in the data dir")]

def up(
    data_dir: DataDirOpt = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="API port")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    pool: Annotated[Path | None, typer.Option(
        "--pool", help="pool file; default examples/pool.yaml if present, else this machine's "
        "GPUs, else 2 virtual nodes x 4 GPUs")] = None,
    db: DbOpt = None,
    no_scheduler: Annotated[bool, typer.Option(
        "--no-scheduler", help="serve the API only (another process schedules)")] = False,
    demo: Annotated[bool, typer.Option("--demo", help="run the demo (two teams, a reclaim, a "
                                       "checkpoint restart, cost) on a priced 2 x 4 GPU virtual "
                                       "pool unless --pool is given")] = False,
    grace: Annotated[float, typer.Option("--grace", min=0, help="seconds between SIGTERM and "
                                         "SIGKILL when stopping work")] = 30.0,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="the longest wait "
                                            "between scheduling cycles; a job end the backend "
                                            "sees (Slurm), a finished launch or a cancel starts "
                                            "one sooner (at most one per 0.05 s)")] = 1.0,
    backend: Annotated[str, typer.Option(
        "--backend", help="where work runs: local (processes on this machine), ray, slurm, "
        "kubernetes, or agent (hosts running `corral agent`)")] = "local",
    agent_timeout: Annotated[float, typer.Option(
        "--agent-timeout", min=1, help="agent backend: seconds without a heartbeat before a "
        "host is lost and its work restarts elsewhere")] = 30.0,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Ray cluster address (default: auto, or RAY_ADDRESS)")] = None,
    slurm_partition: Annotated[str | None, typer.Option(
        "--slurm-partition", help="submit to this partition and offer only its nodes")] = None,
    slurm_gpu_model: Annotated[str, typer.Option(
        "--slurm-gpu-model", help="GPU model of Slurm nodes whose gres has no type")] = "unknown",
    slurm_warm_slots: Annotated[int, typer.Option(
        "--slurm-warm-slots", min=0, max=64,  # (SlurmBackend's MAX_WARM_SLOTS, not imported:
        # the CLI starts without the engines' modules)
        help="Slurm: spare pilot jobs kept queued on each node and GPU shape ahead of work, "
        "so a worker starts as soon as a GPU frees; a pilot runs only workers corral placed "
        "on its node, and holds its GPU up to 2 s idle after its last one. 0 turns pilots "
        "off (one Slurm job per worker)")] = 2,
    slurm_pilot_reuse_s: Annotated[float, typer.Option(
        "--slurm-pilot-reuse-s", min=0, max=3600,  # SlurmBackend's MAX_PILOT_REUSE_S
        help="Slurm: seconds a pilot keeps running the next worker queued on its GPU after "
        "its worker ended (no new Slurm job: Slurm's accounting sees one job for those "
        "workers; corral's records name the job each ran in). 0: one worker a Slurm job")
    ] = 60.0,
    k8s_image: Annotated[str | None, typer.Option(
        "--k8s-image", help="container image workers run in (kubernetes backend)")] = None,
    k8s_namespace: Annotated[str, typer.Option("--k8s-namespace")] = "corral",
    gpu_probe_interval: Annotated[float, typer.Option(
        "--gpu-probe-interval", min=0, help="seconds between health probes of this machine's "
        "GPUs through NVML (XID errors, uncorrected ECC, temperature, row remapping); used when "
        "the local backend found its GPUs with NVML; 0 turns it off")
    ] = DEFAULT_GPU_PROBE_INTERVAL_S,
    gpu_idle_below: Annotated[float, typer.Option(
        "--gpu-idle-below", min=0.001, max=1.0, help="a GPU held by work and measured under "
        "this busy (a fraction: 0.1 = 10%) is shown 'held, barely used' (nodes, Pool page)")
    ] = 0.1,
    gpu_use_stale: Annotated[float, typer.Option(
        "--gpu-use-stale", min=1, max=86_400, help="seconds after which a GPU's measured use "
        "says nothing of now: left out of the node's use and of /metrics")] = 300.0,
    worker_user: Annotated[str | None, typer.Option(
        "--worker-user", help="OS user local workers run as: per-queue (corral-q-<queue>, "
        "created on demand), a user name, or same (corral's own user: one trust domain); "
        "default per-queue as root, else same")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the control plane: store, scheduler loop, a backend (local by default) and API."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data_dir = data_dir or default_data_dir()
    if demo and pool is None:  # the demo's story is sized for the default 2 x 4 pool, priced
        pool = demo_pool_file(data_dir)  # (also from the repo root, over examples/pool.yaml)
    if demo and worker_user is None:  # the demo's jobs run corral's own interpreter, which the
        worker_user = "same"  # per-queue users of a root install cannot reach (a venv in /root)
    cfg = ServerConfig(data_dir=data_dir, host=host, port=port,
                       pool_file=pool, db_url=db, schedule=not no_scheduler, stop_grace_s=grace,
                       interval_s=interval, backend=backend, ray_address=ray_address,
                       slurm_partition=slurm_partition, slurm_gpu_model=slurm_gpu_model,
                       slurm_warm_slots=slurm_warm_slots,
                       slurm_pilot_reuse_s=slurm_pilot_reuse_s,
                       k8s_image=k8s_image, k8s_namespace=k8s_namespace,
                       gpu_probe_interval_s=gpu_probe_interval, worker_user=worker_user,
                       agent_timeout_s=agent_timeout, gpu_idle_below=gpu_idle_below,
                       gpu_use_stale_s=gpu_use_stale)
    try:
        port_base()  # a bad CORRAL_REPLICA_PORT_BASE is said now, not by every step
        _check_worker_users(cfg)
        serve(cfg, on_ready=lambda parts, url: _ready(cfg, parts, url, demo))
    except SpecError as e:
        err.print(f"[red]error in the pool file:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    except (ValueError, WorkerUserError) as e:  # an unknown backend, a missing option...
        err.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except OSError as e:  # the port is taken, the data dir is not writable...
        err.print(f"[red]error:[/red] {e}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def _check_worker_users(cfg: ServerConfig) -> None:
    """Say at start, not job by job, when the workers' users cannot run the interpreter a job's
    `python` means (corral's own). A warning, not a refusal: jobs that run other programs (a
    system python3, a shell line) still work."""
    users = worker_users(cfg)
    problem = None if users is None else interpreter_problem(sys.executable, users)
    if problem is not None:
        err.print(f"[yellow]warning:[/yellow] {problem}.\n  Fix: run with --worker-user same "
                  "(workers run as corral's own user: one trust domain), or install Python "
                  "where every user can read it (a system Python, or a venv under /opt with "
                  "folders o+rx) and run corral from it.", markup=True, highlight=False)


def _ready(cfg: ServerConfig, parts: Composed, url: str, demo: bool) -> None:
    dd = DataDir(cfg.data_dir)
    out.print(f"corral is up at [bold]{url}[/bold] (data dir {dd.root.resolve()})")
    out.print(f"  dashboard: [bold]{url.rstrip('/')}/ui/[/bold] (sign in with the admin token)")
    out.print(f"  pool: {parts.pool_source}; store: {parts.store.dialect}; "
              f"scheduler: {'on' if cfg.schedule else 'off (API only)'}; backend: {cfg.backend}")
    if parts.gpu_probe is not None:
        out.print(f"  GPU health: NVML probe every {cfg.gpu_probe_interval_s:g}s "
                  "(an unhealthy GPU cordons and drains its node)")
    if parts.admin_token:
        out.print(f"  admin token (shown once, also in {dd.admin_token}): {parts.admin_token}")
    out.print("  try: corral submit FILE | corral ls | corral top   (Ctrl-C stops the server)")
    if demo:
        threading.Thread(target=_submit_demo, args=(url, dd), daemon=True).start()


def _submit_demo(url: str, dd: DataDir) -> None:
    submit_demo(url, dd.admin_token.read_text().strip(), lambda line: out.print(line))


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """Apply the store's migrations (corral up does this on start too)."""
    dd = DataDir(data_dir or default_data_dir())
    dd.root.mkdir(parents=True, exist_ok=True)
    store = Store(db or sqlite_url(dd.db))
    try:
        store.upgrade()
        out.print(f"database at revision {current_revision(store.engine)}")
    finally:
        store.close()
