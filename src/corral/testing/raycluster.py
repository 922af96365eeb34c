"""A real multi-node Ray cluster on one machine, with fake GPUs, for tests.

Built on ``ray.cluster_utils.Cluster`` (Ray's own test helper): every "node" is a real raylet
with its own object store, registered with one GCS, so placement groups, node affinity,
``num_gpus`` scheduling and node death behave as on a real cluster. GPUs are declared
(``num_gpus=4``), not detected; Ray still hands each GPU task a CUDA_VISIBLE_DEVICES of its own.

What it starts: a head node (GCS + raylet, no GPUs, no dashboard) and ``workers`` worker raylets.
Each node gets a small object store (``object_store_mb``, Ray's floor is 75 MiB) and few CPUs so
that the whole cluster fits in a 2-core / 24 GiB CI box. Node death is detected fast: the GCS
health check is tightened (see ``FAST_FAILURE_DETECTION``) so a killed worker is reported dead
within a few seconds instead of ~20 s.

Only what this object started is stopped: ``Cluster.shutdown`` kills the processes of the nodes
it added, by their handles. Never ``ray stop``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from corral.testing.daemons import free_tcp_ports, kill_pids, pids_with_cmdline, pids_with_env
from corral.testing.errors import HarnessStartFailed, HarnessUnavailable

#: Ray's words when a raylet did not register in its fixed 30 s (ray._private.node)
RAYLET_STARTUP_TIMEOUT = "timed out during startup"

__all__ = [
    "CLUSTER_MARKER_ENV",
    "FAST_FAILURE_DETECTION",
    "NODE_MARKER_ENV",
    "RayNodeSpec",
    "RayTestCluster",
    "require_ray",
]

# GCS health check (ray_config_def.h defaults: 5 s initial delay, every 3 s, 5 failures = ~20 s).
FAST_FAILURE_DETECTION: Mapping[str, int] = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 3,
}
MIN_OBJECT_STORE_MB = 75  # Ray refuses smaller object stores
# Set on every raylet (and so inherited by its agents and workers, which rename themselves to
# "ray::..." and so cannot be found by command line): the cluster's temp dir, and
# "<temp dir>:<node name>" per node, so a killed node's stragglers can be killed too.
CLUSTER_MARKER_ENV = "CORRAL_RAY_HARNESS"
NODE_MARKER_ENV = "CORRAL_RAY_NODE"


def require_ray() -> None:
    """Raise HarnessUnavailable when the ``ray`` package is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise HarnessUnavailable("ray is not installed; pip install -e '.[ray]' (or '.[all,dev]')")


def _ray_default_temp_dir() -> str:
    """Ray's default temp dir ($RAY_TMPDIR, else $TMPDIR, else /tmp; plus "ray")."""
    try:
        from ray._common import utils
    except ImportError:  # older Ray kept it in ray._private.utils
        from ray._private import utils  # type: ignore[no-redef]
    default: Callable[[], str] = utils.get_default_ray_temp_dir
    return default()


@dataclass(frozen=True)
class RayNodeSpec:
    """One fake GPU worker node: ``accelerator`` becomes resource ``accelerator_type:<model>``."""

    num_gpus: int = 4
    num_cpus: int = 2
    accelerator: str | None = "H100"
    resources: Mapping[str, float] = field(default_factory=dict)

    def ray_resources(self) -> dict[str, float]:
        res = dict(self.resources)
        if self.accelerator:
            res[f"accelerator_type:{self.accelerator}"] = 1.0
        return res


class RayTestCluster:
    """Head plus worker nodes; a context manager. Worker names are ``worker-1``, ``worker-2``...

    Contract: ``start()`` returns once every node is registered alive with the GCS; on failure it
    has shut down what it started and raises HarnessStartFailed. ``stop()`` is idempotent. When
    ``connect=True`` this process is attached as a driver (``ray.init(address=...)``) and is
    detached again by ``stop()``.
    """

    def __init__(
        self,
        workers: Sequence[RayNodeSpec] = (RayNodeSpec(), RayNodeSpec()),
        *,
        head_cpus: int = 1,
        object_store_mb: int = 80,
        connect: bool = False,
        system_config: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        require_ray()
        if object_store_mb < MIN_OBJECT_STORE_MB:
            raise ValueError(
                f"object_store_mb must be >= {MIN_OBJECT_STORE_MB}, got {object_store_mb}"
            )
        self.worker_specs = list(workers)
        self.head_cpus = head_cpus
        self.object_store_mb = object_store_mb
        self.connect_driver = connect
        self.system_config = dict(
            FAST_FAILURE_DETECTION if system_config is None else system_config
        )
        self.start_timeout = start_timeout
        self._cluster: Any = None
        self._workers: dict[str, Any] = {}  # name -> ray._private.node.Node
        self._node_ids: dict[str, str] = {}  # name -> hex node id (kept after the node dies)
        self._next_index = 1
        self._connected = False
        self._temp_dir: Path | None = None

    # --- public surface -----------------------------------------------------------------------
    @property
    def address(self) -> str:
        """GCS address (host:port) for ``ray.init(address=...)``."""
        if self._cluster is None:
            raise RuntimeError("RayTestCluster is not started")
        return str(self._cluster.address)

    @property
    def temp_dir(self) -> Path:
        """Ray's temp dir for this cluster (sessions, logs under session_*/logs)."""
        if self._temp_dir is None:
            raise RuntimeError("RayTestCluster is not started")
        return self._temp_dir

    def process_ids(self) -> list[int]:
        """PIDs of every live process of this cluster: GCS and head services carry its temp dir
        on their command lines, raylets and their children carry the marker variable."""
        temp = str(self.temp_dir)
        return sorted(set(pids_with_cmdline(temp)) | set(pids_with_env(CLUSTER_MARKER_ENV, temp)))

    def _markers(self, name: str) -> dict[str, str]:
        temp = str(self.temp_dir)
        return {CLUSTER_MARKER_ENV: temp, NODE_MARKER_ENV: f"{temp}:{name}"}

    @property
    def head_node_id(self) -> str:
        return str(self._cluster.head_node.node_id)

    @property
    def node_ids(self) -> dict[str, str]:
        """Worker name -> Ray node id (hex), for every worker ever added, alive or not."""
        return dict(self._node_ids)

    @property
    def live_workers(self) -> list[str]:
        return list(self._workers)

    def add_node(self, spec: RayNodeSpec | None = None, *, name: str | None = None) -> str:
        """Start one more worker node, wait until it is registered, and return its name."""
        spec = spec or RayNodeSpec()
        name = name or f"worker-{self._next_index}"
        if name in self._node_ids or name == "head":
            raise ValueError(f"node name {name!r} is already used; pick another")
        self._next_index += 1
        node = self._cluster.add_node(
            wait=True,
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
            resources=spec.ray_resources(),
            object_store_memory=self.object_store_mb * 2**20,
            env_vars=self._markers(name),
        )
        self._workers[name] = node
        self._node_ids[name] = str(node.node_id)
        return name

    def kill_node(self, name: str) -> str:
        """Kill that worker's processes at once (SIGKILL, no graceful drain), as a machine failure
        would; return its node id. Use ``wait_for_node_dead`` to see the GCS notice it."""
        if name not in self._workers:
            raise KeyError(f"unknown or already killed worker {name!r}; live: {self.live_workers}")
        node = self._workers.pop(name)
        self._cluster.remove_node(node, allow_graceful=False)
        # remove_node kills the raylet; its agents and idle workers would linger for a minute.
        kill_pids(pids_with_env(NODE_MARKER_ENV, self._markers(name)[NODE_MARKER_ENV]))
        return self._node_ids[name]

    def node_alive(self, node_id: str) -> bool | None:
        """Whether the GCS sees that node alive (None: unknown id). Needs no driver."""
        for entry in self._cluster.global_state.node_table():
            if entry["NodeID"] == node_id:
                return bool(entry["Alive"])
        return None

    def wait_for_node_dead(self, node_id: str, timeout: float = 30.0) -> None:
        """Poll the GCS until it reports ``node_id`` dead; HarnessStartFailed after timeout."""
        deadline = time.monotonic() + timeout
        while self.node_alive(node_id):
            if time.monotonic() > deadline:
                raise HarnessStartFailed(f"Ray still reports node {node_id} alive after {timeout}s")
            time.sleep(0.2)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> RayTestCluster:
        """Start head and workers. On a loaded box Ray can fail to start for want of CPU, not of
        anything we can fix: a raylet dies if its Python dashboard agent has not written its port
        file within a fixed 15 s (ray-project/ray#65983), and Node gives the raylet a fixed 30 s
        to register (ray._private.node); the first seen in the raylet's log at load ~20-30 on the
        2-core box. That failure ("timed out during startup") is tried once more from
        nothing, in case the load has dropped, before the start fails."""
        try:
            return self._start_once()
        except HarnessStartFailed as exc:
            if RAYLET_STARTUP_TIMEOUT not in str(exc):
                raise
            return self._start_once()

    def _start_once(self) -> RayTestCluster:
        from ray.cluster_utils import Cluster

        # No usage-stats reporting from test clusters (there is no network anyway).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._temp_dir = Path(tempfile.mkdtemp(prefix="corral-ray-"))
        # Cluster.add_node writes the address file into Ray's *default* temp dir (/tmp/ray)
        # whatever temp_dir says, and fails if that dir does not exist (a fresh CI machine).
        os.makedirs(_ray_default_temp_dir(), exist_ok=True)
        # A head takes fixed ports unless told otherwise: the dashboard's 8265 (started even
        # with include_dashboard=False, and with no retry when a port is given) and its agent's
        # 52365 (worker nodes get a random one from cluster_utils). A second cluster's head on
        # the machine (another developer's run, a lifecycle self-test) could bind neither, and a
        # raylet whose agent never writes its port file dies: the head gets free ports instead.
        dashboard_port, agent_port = free_tcp_ports(2)
        try:
            self._cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": self.head_cpus,
                    "num_gpus": 0,
                    "include_dashboard": False,
                    "dashboard_port": dashboard_port,
                    "dashboard_agent_listen_port": agent_port,
                    "object_store_memory": self.object_store_mb * 2**20,
                    "_system_config": self.system_config,
                    # Session dirs, logs and sockets go here, not /tmp/ray: stop() removes them.
                    "temp_dir": str(self._temp_dir),
                    "env_vars": self._markers("head"),
                },
            )
            for spec in self.worker_specs:
                self.add_node(spec)
            self._cluster.wait_for_nodes(timeout=self.start_timeout)
            if self.connect_driver:
                self.connect()
        except BaseException as exc:
            self.stop()
            if isinstance(exc, Exception) and not isinstance(exc, HarnessStartFailed):
                raise HarnessStartFailed(f"Ray test cluster failed to start: {exc!r}") from exc
            raise
        return self

    def connect(self) -> None:
        """Attach this process as a driver (``ray.init``); ``stop()`` detaches it."""
        import ray

        ray.init(address=self.address, log_to_driver=False)
        self._connected = True

    def disconnect(self) -> None:
        """Detach this process's driver (``ray.shutdown``) if ``connect`` attached it."""
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False

    def stop(self) -> None:
        self.disconnect()
        if self._cluster is not None:
            try:
                self._cluster.shutdown()
            finally:
                self._cluster = None
                self._workers.clear()
        if self._temp_dir is not None:
            # Workers and agents whose raylet died first may outlive Cluster.shutdown.
            kill_pids(self.process_ids())
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> RayTestCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
