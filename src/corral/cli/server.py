"""`corral up`: compose the store, the pool, the local backend, the control loop and the API.

Data dir layout (default `./.corral`, or $CORRAL_DATA_DIR)::

    corral.db        the SQLite store (unless --db gives a PostgreSQL URL)
    admin-token      the admin's API token, written on first start (mode 0600)
    (the dir is 0700, every file corral writes 0600: umask 077; see worker_users for 0711)
    server.json      where the running server listens (read by the CLI)
    work/            the local backend's records and worker logs
    checkpoints/     checkpoint dirs of workloads that name none

Pool: --pool FILE; else examples/pool.yaml when present in the working directory; else the
machine's GPUs through NVML; else a virtual inventory of 2 nodes x 4 GPUs (enough to try
corral on a laptop without GPUs). The pool's nodes are the local backend's inventory: every
worker runs as a process of this machine.

GPU health: when the local backend's inventory came from NVML (no pool file, GPUs found), the
control loop probes them every `gpu_probe_interval_s` (`corral up --gpu-probe-interval`, default
10 s, 0 turns it off) with `corral.backends.nvml.NvmlHealthProbe` and hands the verdict to
`corral.control.health.HealthMonitor`: an unhealthy GPU cordons the node and drains its work, a
degraded one cordons it, and a node healthy on `GPU_RECOVER_PROBES` probes in a row takes work
again. A critical XID stays reported until corral restarts (the GPU needs a reset first). With a
pool file, a virtual inventory or an engine backend, nothing is probed: those nodes are not
this machine's GPUs.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from corral.api import ApiContext, create_app
from corral.api.serving import uvicorn_config
from corral.backends.base import Backend
from corral.backends.health import GpuHealthProbe
from corral.backends.local import LocalBackend
from corral.backends.worker_users import PER_QUEUE, SAME_USER, WorkerUsers
from corral.cli.defaults import (  # the client reads them too
    DEFAULT_GPU_PROBE_INTERVAL_S,
    DEFAULT_PORT,
    DataDir,
    default_data_dir,
)
from corral.control import ControlLoop, ControlSettings, Leadership, Submissions
from corral.control.accounting import accounting_from_pool
from corral.control.autoscale import watch_feed
from corral.control.future_nodes import future_key, future_nodes
from corral.control.health import HealthMonitor, probe_verdicts
from corral.control.pool_providers import autoscaler_from_pool, spot_prices_hook
from corral.core.model import CapacityKind, Node, Queue
from corral.spec import PoolSpec, load_pool
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P
from corral.store.database import sqlite_url

__all__ = ["DataDir", "ServerConfig", "bootstrap", "default_data_dir", "serve"]

log = logging.getLogger("corral.server")
ADMIN = "admin"
# A node returns to service after this many healthy probes in a row, not after the first: a GPU
# hovering at a temperature threshold would otherwise be cordoned and uncordoned every probe.
GPU_RECOVER_PROBES = 3


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    pool_file: Path | None = None
    db_url: str | None = None
    schedule: bool = True  # False: serve the API only (a replica, or a benchmark)
    interval_s: float = 1.0
    stop_grace_s: float = 30.0
    #: where work runs: local processes, or a Ray, Slurm or Kubernetes cluster
    backend: str = "local"
    ray_address: str | None = None
    slurm_partition: str | None = None
    slurm_gpu_model: str = "unknown"
    #: Slurm: spare pilot jobs queued per node and GPU shape ahead of work (`SlurmBackend(
    #: warm_slots)`, `corral.backends.slurm_pilot`); 0: off. The default is the backend's
    #: `DEFAULT_WARM_SLOTS`, repeated (this module starts without the engines' modules; a test
    #: holds them equal)
    slurm_warm_slots: int = 2
    #: Slurm: how long a pilot keeps taking the next worker queued on its node and shape after
    #: its worker ended (`SlurmBackend(pilot_reuse_s)`); 0: one worker a Slurm job
    slurm_pilot_reuse_s: float = 60.0
    k8s_image: str | None = None
    k8s_namespace: str = "corral"
    #: seconds between NVML probes of this machine's GPUs (local backend, inventory from NVML);
    #: 0 turns the probe off
    gpu_probe_interval_s: float = DEFAULT_GPU_PROBE_INTERVAL_S
    #: the OS user of local workers (`corral.backends.worker_users`): "per-queue", a user name,
    #: or "same" (corral's own: one trust domain); None: per-queue as root, else same
    worker_user: str | None = None
    #: agent backend: a host not heard from this long is lost (its gangs restart elsewhere)
    agent_timeout_s: float = 30.0
    #: measured GPU use (`corral.control.device_use.UseCutoffs`): a held GPU under this busy
    #: (0..1] is "held, barely used"; a sample older than `gpu_use_stale_s` says nothing
    gpu_idle_below: float = 0.1
    gpu_use_stale_s: float = 300.0


@dataclass
class Composed:
    store: Store
    backend: Backend
    loop: ControlLoop
    ctx: ApiContext
    admin_token: str | None  # only on the first start
    pool_source: str
    gpu_probe: GpuHealthProbe | None = None  # this machine's GPUs, when they are probed

    def close(self) -> None:
        """Release what the parts hold (NVML, the engine connection, the database), each even
        if releasing another failed."""
        with contextlib.ExitStack() as parts:  # runs the callbacks last to first
            parts.callback(self.store.close)
            close = getattr(self.backend, "close", None)
            if callable(close):  # the Ray backend disconnects from its cluster
                parts.callback(close)
            if self.gpu_probe is not None:
                parts.callback(self.gpu_probe.close)


@dataclass(frozen=True)
class Inventory:
    """The local backend's nodes, where they came from, and whether NVML found them here."""

    nodes: list[Node]
    source: str
    from_nvml: bool = False


def resolve_pool(pool_file: Path | None) -> tuple[PoolSpec | None, str]:
    """The pool spec and a sentence saying where it came from (None: detect or virtual)."""
    if pool_file is not None:
        return load_pool(pool_file), str(pool_file)
    example = Path("examples/pool.yaml")
    if example.is_file():
        return load_pool(example), str(example)
    return None, ""


def _nodes(spec: PoolSpec | None) -> Inventory:
    if spec is not None:
        return Inventory(spec.nodes(), "")
    from corral.backends.nvml import local_gpus

    gpus = local_gpus()
    if gpus:
        node = Node(id=socket.gethostname(), provider="local", gpu_model=gpus[0].name,
                    gpu_count=len(gpus), gpu_memory_mib=min(g.memory_mib for g in gpus),
                    cpu_milli=(os.cpu_count() or 1) * 1000, memory_mib=_ram_mib(),
                    capacity_kind=CapacityKind.OWNED)
        return Inventory([node], f"this machine's {len(gpus)} GPU(s) (NVML)", from_nvml=True)
    return Inventory(virtual_inventory(),
                     "a virtual inventory of 2 nodes x 4 GPUs (no GPU found)")


def _ram_mib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 0


def virtual_inventory(count: int = 2, gpus: int = 4) -> list[Node]:
    """Declared, not detected: CPU and memory are generous so that the CPU-only demo workloads
    are limited by GPUs, as they would be on a real pool."""
    return [Node(id=f"local-{i}", provider="local", gpu_model="virtual-gpu", gpu_count=gpus,
                 gpu_memory_mib=81920, cpu_milli=64_000, memory_mib=262_144,
                 capacity_kind=CapacityKind.OWNED) for i in range(count)]


def bootstrap(cfg: ServerConfig) -> Composed:
    """Open (and migrate) the store, sync the pool, make sure an admin exists, build the parts."""
    dd = DataDir(cfg.data_dir)
    users = worker_users(cfg)
    # measured GPU use (issue 14): the cut-offs the API, the Pool page and /metrics judge by,
    # checked before anything is opened (a ValueError naming the flag)
    from corral.control.device_use import UseCutoffs, board_for

    cutoffs = UseCutoffs(cfg.gpu_idle_below, cfg.gpu_use_stale_s)
    _private_data_dir(dd, users is not None)
    store = Store(cfg.db_url or sqlite_url(dd.db))
    board_for(store).cutoffs = cutoffs
    store.upgrade()
    _private_files(dd)
    from corral.store.secrets import SecretBox  # issue 13: the key named secrets are sealed with

    store.secret_box = SecretBox.load(dd.root)  # CORRAL_SECRET_KEY, else <data dir>/secret-key
    spec, source = resolve_pool(cfg.pool_file)
    inventory = _nodes(spec)
    nodes, detected = inventory.nodes, inventory.source
    backend, health = _backend(cfg, dd, store, nodes, users)
    probe = None
    if cfg.backend != "local":
        # An engine's nodes come from the engine itself (the pool file still gives queues and
        # prices); the health monitor keeps them in sync, cordons and drains dead ones.
        nodes, detected = list(backend.inventory()), f"{cfg.backend} cluster inventory"
    elif inventory.from_nvml and cfg.gpu_probe_interval_s > 0:
        health, probe = _gpu_health(store, nodes, cfg.gpu_probe_interval_s)
    _sync_pool(store, spec, nodes)
    token = _ensure_admin(store, dd)
    scheduler = spec.scheduler.to_core() if spec is not None else ControlSettings().scheduler
    settings = ControlSettings(checkpoint_root=dd.checkpoints, interval_s=cfg.interval_s,
                               stop_grace_s=cfg.stop_grace_s, scheduler=scheduler)
    if spec is not None:  # moving jobs to faster accelerators (issue 17): off unless enabled
        settings = replace(settings, migration=spec.scheduler.migration.to_core())
    leadership = Leadership(store, ttl_s=settings.lease_ttl_s)
    # ledger hook: pool prices, budget admission, metering and settlement (corral.control.accounting)
    accounting = accounting_from_pool(store, spec, time.time())
    # issue 11: the pool autoscaler over the pool file's renting providers (None: none rents)
    autoscaler = autoscaler_from_pool(store, spec, _cluster_id(cfg, dd), _advertise_url(cfg),
                                      time.time)
    loop = ControlLoop(store, backend, settings=settings, leadership=leadership,
                       admission=accounting, health=health, autoscaler=autoscaler)
    watch_feed(autoscaler, leadership, loop.live)  # a quiet pass reads no audit record (#11)
    # work that fits only what the renting providers could give is accepted, to wait for them
    from corral.control.webhooks import allowed_from_env  # issue 13: private hook targets

    submissions = Submissions(store, scheduler, rentable=future_nodes, rentable_key=future_key,
                              webhook_allowed=allowed_from_env())
    autoscaler.offers_seen = spot_prices_hook(submissions.invalidate)  # spot caps (issue 11)
    ctx = ApiContext(store, submissions, logs=backend, leadership=leadership,
                     backend_name=backend.name)
    return Composed(store, backend, loop, ctx, token, source or detected, probe)


def _cluster_id(cfg: ServerConfig, dd: DataDir) -> str:
    """A stable name for this cluster's store: tags every instance it rents (reconciliation)."""
    key = cfg.db_url or str(Path(dd.db).resolve())
    return "corral-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _advertise_url(cfg: ServerConfig) -> str:
    """Where rented hosts' agents reach this server: CORRAL_ADVERTISE_URL, else host:port."""
    return os.environ.get("CORRAL_ADVERTISE_URL") or f"http://{cfg.host}:{cfg.port}"


def _gpu_health(store: Store, nodes: list[Node],
                interval_s: float) -> tuple[HealthMonitor, GpuHealthProbe]:
    """A monitor fed by NVML verdicts for the node NVML found here (the local inventory).

    No backend is given: the local backend's inventory is this machine and never changes, so it
    says nothing about liveness; the GPUs alone decide. If NVML fails to start now although it
    found the GPUs a moment ago, the verdict says so and the node is cordoned.
    """
    from corral.backends.nvml import NvmlHealthProbe

    probe = NvmlHealthProbe()
    if not probe.available:
        log.warning("GPU health probe unavailable: %s", probe.unavailable_reason)
    # each check also samples the GPUs' measured use for the API and /metrics (issue 14/17)
    from corral.control.device_use import RecordingProbe, board_for

    verdicts = probe_verdicts({n.id: RecordingProbe(probe, n.id, board_for(store)) for n in nodes},
                              {n.id: n.gpu_count for n in nodes})
    monitor = HealthMonitor(store, None, gpu_verdicts=verdicts, interval_s=interval_s,
                            recover_after_s=(GPU_RECOVER_PROBES - 1) * interval_s,
                            join_new_nodes=False)
    return monitor, probe


BACKENDS = ("local", "ray", "slurm", "kubernetes", "agent")


def worker_users(cfg: ServerConfig) -> WorkerUsers | None:
    """Who runs local workers: their queue's user when corral is root (unless told otherwise);
    None: corral's own user. Raises WorkerUserError when asked for what cannot be had."""
    mode = cfg.worker_user or (PER_QUEUE if os.geteuid() == 0 else SAME_USER)
    if cfg.backend != "local" or mode == SAME_USER:
        return None
    return WorkerUsers(mode)


def _private_data_dir(dd: DataDir, worker_users: bool) -> None:
    """Everything corral writes from now on is its own (umask 077): the database, logs,
    tokens, records. With worker users the data dir and checkpoints/ are 0711 (a worker
    reaches its checkpoint dir by path, lists nothing); else 0700."""
    os.umask(0o077)
    dd.root.mkdir(parents=True, exist_ok=True)
    os.chmod(dd.root, 0o711 if worker_users else 0o700)
    if worker_users:
        dd.checkpoints.mkdir(exist_ok=True)
        os.chmod(dd.checkpoints, 0o711)


def _private_files(dd: DataDir) -> None:
    """Tighten what an older corral left 0644 (its umask): the database and its journals."""
    for path in (dd.db, dd.db.with_name("corral.db-wal"), dd.db.with_name("corral.db-shm"),
                 dd.admin_token, dd.server_file):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o600)


def _backend(cfg: ServerConfig, dd: DataDir, store: Store, nodes: list[Node],
             users: WorkerUsers | None = None) -> tuple[Any, HealthMonitor | None]:
    """Build the configured backend (engines are imported only when chosen)."""
    if cfg.backend == "local":
        return LocalBackend(dd.work, nodes=nodes, worker_users=users), None
    work = dd.root / f"{cfg.backend}-work"
    if cfg.backend == "ray":
        from corral.backends.ray import RayBackend

        backend: Any = RayBackend(work, address=cfg.ray_address or "auto")
    elif cfg.backend == "slurm":
        from corral.backends.slurm import SlurmBackend

        backend = SlurmBackend(work, partition=cfg.slurm_partition, gpu_model=cfg.slurm_gpu_model,
                               warm_slots=cfg.slurm_warm_slots,
                               pilot_reuse_s=cfg.slurm_pilot_reuse_s)
    elif cfg.backend == "kubernetes":
        if not cfg.k8s_image:
            raise ValueError("--backend kubernetes needs --k8s-image (the image workers run in)")
        from corral.backends.kubernetes import KubernetesBackend

        backend = KubernetesBackend(work, image=cfg.k8s_image, namespace=cfg.k8s_namespace)
    elif cfg.backend == "agent":  # hosts running `corral agent` (corral.backends.agent)
        from corral.backends.agent import AgentBackend
        from corral.store.agents import StoreMailbox

        backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=cfg.agent_timeout_s)
    else:
        raise ValueError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend, HealthMonitor(store, backend)


def _sync_pool(store: Store, spec: PoolSpec | None, nodes: list[Node]) -> None:
    providers: list[dict[str, Any]] = (
        [p.model_dump(mode="json", exclude={"node_groups"}) for p in spec.providers]
        if spec is not None else [])
    known = {p["name"] for p in providers}
    providers += [{"name": n.provider, "capacity_kind": str(n.capacity_kind)}
                  for n in nodes if n.provider not in known]
    providers = list({p["name"]: p for p in providers}.values())
    with store.write() as conn:
        P.sync_nodes(conn, providers, nodes)
        for q in spec.queues_core() if spec is not None else []:
            P.upsert_queue(conn, q)
        if not P.list_queues(conn):
            total = float(sum(n.gpu_count for n in nodes))
            P.upsert_queue(conn, Queue("default", quota_gpus=total))


def _ensure_admin(store: Store, dd: DataDir) -> str | None:
    """Create the admin and its token on the first start; write the token to the data dir.

    The file is written (whole, by rename) before the transaction commits: a crash in between
    leaves a token file without an admin, which the next start replaces. The other order could
    leave an admin whose token nobody ever saw.
    """
    with store.write() as conn:
        if A.get_user(conn, ADMIN) is not None:
            return None
        A.create_user(conn, ADMIN, "admin", [], 0.0)
        token = A.create_token(conn, ADMIN, 0.0)
        _write_secret(dd.admin_token, token + "\n")
    return token


def _write_secret(path: Path, text: str) -> None:
    """Atomically, mode 0600 from the start: a reader sees no file or the whole of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PortTaken(OSError):
    """The API's address is in use: nothing was started and no file written."""


def listen(host: str, port: int) -> socket.socket:
    """Bind the API's socket before anything else happens: a taken port is found before the
    store is opened, before "corral is up" is printed and before server.json would point the
    CLI at whoever holds the port. Port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT, not a listener
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortTaken(f"{host}:{port} is already in use (another corral, or "
                            "another program); corral did not start: stop it, or choose "
                            "another --port") from None
        raise
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def serve(cfg: ServerConfig, *, on_ready: Any = None) -> None:
    """Run until SIGINT/SIGTERM: the API in this thread, the control loop in another."""
    import uvicorn

    sock = listen(cfg.host, cfg.port)
    try:
        _serve(cfg, sock, on_ready, uvicorn)
    finally:
        sock.close()


def _serve(cfg: ServerConfig, sock: socket.socket, on_ready: Any, uvicorn: Any) -> None:
    port = sock.getsockname()[1]
    parts = bootstrap(cfg)
    dd = DataDir(cfg.data_dir)
    app = create_app(parts.ctx)
    from corral.backends.workdir import WorkdirArchives  # issue 13: uploaded workdirs

    app.state.workdirs = WorkdirArchives(dd.root / "workdirs")
    from corral.web import observe_loop  # cycle duration and placements into /metrics

    observe_loop(app, parts.loop)
    from corral.api.service_routes import mount_gateway  # issue 12: /serve/<service>/...

    mount_gateway(app, parts.loop, parts.backend.name)
    server = uvicorn.Server(uvicorn_config(app, parts.ctx.limits, host=cfg.host, port=port,
                                           log_level="warning", access_log=False))
    stop = threading.Event()
    loop_thread = threading.Thread(target=parts.loop.run, args=(stop,), name="control-loop",
                                   daemon=True)
    from corral.control.webhook_sender import SenderSettings, WebhookSender  # issue 13

    hooks = SenderSettings(allowed=parts.ctx.submissions.webhook_allowed)  # the same rule
    sender_thread = threading.Thread(target=WebhookSender(parts.store, settings=hooks).run,
                                     args=(stop,),
                                     name="webhook-sender", daemon=True)
    if cfg.schedule:
        loop_thread.start()
        sender_thread.start()
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{host}:{port}"
    dd.server_file.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    if on_ready is not None:
        on_ready(parts, url)
    # Everything made so far (modules, the app, the store) lives as long as the server: frozen,
    # no full collection scans it again, and the exit's collections skip it too (~2 s of a stop
    # on a loaded 2-core box; CPython's gc.freeze docs, Instagram's prefork servers).
    gc.freeze()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        parts.loop.wake.set()  # the loop's wait ends now, not at its interval's end
        if loop_thread.is_alive():
            loop_thread.join(timeout=30)
        if sender_thread.is_alive():  # POSTs under way end within their timeouts (<= 30 s)
            sender_thread.join(timeout=35)
        if loop_thread.is_alive():  # a stuck step may still probe: NVML ends with the process
            parts.gpu_probe = None
        parts.close()
        _forget_server_file(dd)


def _forget_server_file(dd: DataDir) -> None:
    """A stopped server's server.json would send the CLI to a port someone else may take next;
    removed when it is still this process's (a newer server may have replaced it)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(dd.server_file.read_text())["pid"] == os.getpid():
            dd.server_file.unlink()
