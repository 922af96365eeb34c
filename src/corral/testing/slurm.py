"""A real Slurm on one host for tests: munged + slurmctld + several slurmd with fake GPUs.

What it starts, all under one temp dir and all as root (Slurm's daemons need root to launch jobs;
``SlurmUser=root``):

* ``munged`` with its own key and socket (``AuthInfo=socket=...`` points Slurm at it), so it
  never touches the host's /etc/munge or /run/munge;
* ``slurmctld`` on a free loopback port;
* one ``slurmd -N <node>`` per fake node (``gpu1``, ``gpu2``, ...), each on its own free port,
  each with ``gpus_per_node`` GPUs whose device files are /dev/null symlinks in the temp dir,
  plus ``gres/shard`` for fractional GPUs.

Client commands (sbatch, squeue, sacct -c, scancel, sinfo, scontrol, srun) reach this cluster
through ``SlurmCluster.env`` (it sets SLURM_CONF). See ``slurmconf`` for why each setting is what
it is, and README.md for measured timings.

Stopping cancels every job, stops each daemon by its PID, then SIGKILLs any process still carrying
this cluster's marker variable (slurmstepd and job processes inherit it), and removes the dir.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from corral.testing.daemons import (
    Daemon,
    find_binary,
    free_tcp_ports,
    kill_pids,
    pids_with_env,
    wait_until,
)
from corral.testing.errors import HarnessStartFailed, HarnessUnavailable
from corral.testing.slurmconf import (
    SlurmLayout,
    SlurmNode,
    SlurmSettings,
    render_gres_conf,
    render_slurm_conf,
)

__all__ = ["MARKER_ENV", "SlurmCluster", "require_slurm"]

MARKER_ENV = "CORRAL_SLURM_HARNESS"
_DAEMONS = ("munged", "munge", "slurmctld", "slurmd")
_CLIENTS = ("sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol", "srun")
_SBIN = ("/usr/sbin", "/sbin")


def require_slurm() -> dict[str, str]:
    """Paths of every Slurm/munge binary the harness uses; HarnessUnavailable if any is absent
    or if we are not root (slurmd must be root to start jobs)."""
    hint = "install slurm-wlm and munge (scripts/install-system-deps)"
    paths = {name: find_binary(name, _SBIN, hint) for name in (*_DAEMONS, *_CLIENTS)}
    if os.geteuid() != 0:
        raise HarnessUnavailable(
            "the Slurm harness must run as root (slurmd launches jobs as root)"
        )
    return paths


class SlurmCluster:
    """One Slurm cluster of ``nodes`` fake GPU nodes on this host; a context manager.

    Contract: ``start()`` returns once ``sinfo`` shows every node idle; on failure it has cleaned up
    and raises HarnessStartFailed with the daemons' log tails. ``stop()`` is idempotent.
    """

    def __init__(
        self,
        nodes: int = 3,
        settings: SlurmSettings | None = None,
        *,
        node_prefix: str = "gpu",
        start_timeout: float = 60.0,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        self.bins = require_slurm()
        self.settings = settings or SlurmSettings()
        self.node_names = [f"{node_prefix}{i}" for i in range(1, nodes + 1)]
        self.start_timeout = start_timeout
        self._layout: SlurmLayout | None = None
        self._munged: Daemon | None = None
        self._slurmctld: Daemon | None = None
        self._slurmd: dict[str, Daemon] = {}

    # --- public surface -----------------------------------------------------------------------
    @property
    def layout(self) -> SlurmLayout:
        if self._layout is None:
            raise RuntimeError("SlurmCluster is not started")
        return self._layout

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands (sbatch, squeue, ...): SLURM_CONF plus the marker."""
        return {**os.environ, "SLURM_CONF": str(self.layout.slurm_conf), MARKER_ENV: str(self.root)}

    def run(
        self, *argv: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster; raises CalledProcessError if check."""
        cmd = [self.bins.get(argv[0], argv[0]), *argv[1:]]
        return subprocess.run(
            cmd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            cwd=self.root,
        )

    def sbatch(self, *args: str) -> str:
        """Submit a batch job (``sbatch --parsable <args>``); return its job id."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return out.split(";", 1)[0]  # "<id>;<cluster>" when the cluster is named on output

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, NodeList, ExitCode, ...); {} once the
        job has aged out of slurmctld (MinJobAge)."""
        done = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        if done.returncode != 0:
            return {}
        fields = (item.split("=", 1) for item in done.stdout.split() if "=" in item)
        return {k: v for k, v in fields}

    def completed_jobs(self) -> dict[str, dict[str, str]]:
        """Finished jobs from the job-completion log (``sacct --completion``), by job id."""
        fmt = "JobID,JobName,State,ExitCode,NodeList,NNodes"
        out = self.run("sacct", "--completion", "--parsable2", f"--format={fmt}").stdout
        lines = out.strip().splitlines()
        if not lines:
            return {}
        header = lines[0].split("|")
        rows = [dict(zip(header, line.split("|"), strict=False)) for line in lines[1:]]
        return {row["JobID"]: row for row in rows}

    def node_states(self) -> dict[str, str]:
        """Node name -> sinfo state (``idle``, ``mixed``, ``allocated``, ``idle*`` = not
        responding, ``down*``, ...)."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N|%T").stdout
        states = dict(line.split("|", 1) for line in out.split() if "|" in line)
        return {name: states[name] for name in self.node_names if name in states}

    def wait_for_nodes(
        self,
        accept: Callable[[str], bool],
        names: Iterable[str] | None = None,
        *,
        timeout: float = 30.0,
        what: str = "node state",
    ) -> dict[str, str]:
        """Poll until ``accept(state)`` holds for each named node (default: all); return states."""
        wanted = list(names) if names is not None else list(self.node_names)
        seen: dict[str, str] = {}

        def ready() -> bool:
            seen.update(self.node_states())
            return all(n in seen and accept(seen[n]) for n in wanted)

        wait_until(
            ready,
            timeout=timeout,
            what=f"{what} of {wanted} (last seen: {seen})",
            logs=[self.layout.log_dir / "slurmctld.log"],
        )
        return {n: seen[n] for n in wanted}

    def kill_node(self, name: str) -> None:
        """SIGKILL that node's slurmd, as a crash would. Its jobs' processes keep running until
        slurmctld marks the node down (``wait_for_nodes(lambda s: s.startswith("down"), [name])``)."""
        self._slurmd_for(name).kill()

    def restart_node(self, name: str, *, timeout: float = 30.0) -> None:
        """Start that node's slurmd again and wait until the node is responding and usable."""
        daemon = self._slurmd_for(name)
        if daemon.alive():
            raise RuntimeError(f"slurmd of {name} is still running; kill_node({name!r}) first")
        self._slurmd[name] = self._new_slurmd(name).start()
        self.wait_for_nodes(_usable, [name], timeout=timeout, what="return to service")

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> SlurmCluster:
        root = Path(tempfile.mkdtemp(prefix="corral-slurm-"))
        try:
            self._layout = self._make_layout(root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        # If the test process exits without tearing down (an unhandled error outside pytest),
        # the daemons still go: they run in their own sessions and would otherwise linger.
        atexit.register(self.stop)
        try:
            self._write_files()
            self._start_munged()
            self._start_slurmctld()
            for name in self.node_names:
                self._slurmd[name] = self._new_slurmd(name).start()
            self.wait_for_nodes(
                lambda s: s == "idle", timeout=self.start_timeout, what="all nodes idle"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel jobs, stop daemons by PID, kill leftovers carrying our marker, remove the dir."""
        if self._layout is None:
            return
        atexit.unregister(self.stop)
        try:
            self.cancel_all_jobs()
            for daemon in [*self._slurmd.values(), self._slurmctld, self._munged]:
                if daemon is not None:
                    daemon.stop(grace=10)
            kill_pids(pids_with_env(MARKER_ENV, str(self.root)))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self._layout, self._munged, self._slurmctld = None, None, None
            self._slurmd.clear()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- steps ----------------------------------------------------------------------------------
    def _make_layout(self, root: Path) -> SlurmLayout:
        # munged insists that every directory above its socket is world-searchable.
        root.chmod(0o755)
        ports = free_tcp_ports(1 + len(self.node_names))
        nodes = tuple(SlurmNode(n, p) for n, p in zip(self.node_names, ports[1:], strict=True))
        host = socket.gethostname().split(".")[0]
        return SlurmLayout(root=root, controller_host=host, controller_port=ports[0], nodes=nodes)

    def _write_files(self) -> None:
        lay, s = self.layout, self.settings
        for sub, mode in (
            ("etc", 0o755),
            ("run", 0o755),
            ("state", 0o700),
            ("spool", 0o755),
            ("log", 0o755),
            ("dev", 0o755),
            ("munge", 0o700),
        ):
            (lay.root / sub).mkdir(mode=mode)
            (lay.root / sub).chmod(mode)  # mkdir's mode passes through the umask (077 in corral up)
        for i in range(s.gpus_per_node):
            # slurmd accepts only character/block devices as GPU files; /dev/null is one.
            lay.device_file(i).symlink_to("/dev/null")
        lay.slurm_conf.write_text(render_slurm_conf(lay, s))
        (lay.slurm_conf.parent / "gres.conf").write_text(render_gres_conf(lay, s))
        key = lay.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

    def _daemon_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "SLURM_CONF": str(self.layout.slurm_conf),
            MARKER_ENV: str(self.root),
        }

    def _start_munged(self) -> None:
        lay = self.layout
        m = lay.root / "munge"
        self._munged = Daemon(
            "munged",
            [
                self.bins["munged"],
                "--foreground",
                f"--socket={lay.munge_socket}",
                f"--key-file={m / 'munge.key'}",
                f"--pid-file={lay.root / 'run' / 'munged.pid'}",
                f"--log-file={lay.log_dir / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
            log=lay.log_dir / "munged.out",
            env=self._daemon_env(),
            cwd=lay.root,
        ).start()

        def munge_works() -> bool:
            cmd = [self.bins["munge"], "-n", "-S", str(lay.munge_socket)]
            return subprocess.run(cmd, capture_output=True, timeout=5, check=False).returncode == 0

        wait_until(
            munge_works,
            timeout=20,
            what="munged to issue credentials",
            watch=[self._munged],
            logs=[lay.log_dir / "munged.log"],
        )

    def _start_slurmctld(self) -> None:
        lay = self.layout
        self._slurmctld = Daemon(
            "slurmctld",
            [self.bins["slurmctld"], "-D", "-i"],
            log=lay.log_dir / "slurmctld.out",
            env=self._daemon_env(),
            cwd=lay.root,
        ).start()

        def controller_up() -> bool:
            return "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout

        wait_until(
            controller_up,
            timeout=self.start_timeout,
            what="slurmctld to answer ping",
            watch=[self._slurmctld],
            logs=[lay.log_dir / "slurmctld.log"],
        )

    def _new_slurmd(self, name: str) -> Daemon:
        lay = self.layout
        return Daemon(
            f"slurmd {name}",
            [self.bins["slurmd"], "-D", "-N", name],
            log=lay.log_dir / f"slurmd-{name}.out",
            env=self._daemon_env(),
            cwd=lay.root,
        )

    def _slurmd_for(self, name: str) -> Daemon:
        if name not in self._slurmd:
            raise KeyError(f"unknown node {name!r}; this cluster has {self.node_names}")
        return self._slurmd[name]

    def cancel_all_jobs(self) -> None:
        """scancel every job and wait (15 s at most) until none is pending, running or
        completing: what a test that leaves jobs behind calls in its teardown, so the session's
        next test finds the nodes idle."""
        if self._slurmctld is None or not self._slurmctld.alive():
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError, HarnessStartFailed):
            ids = self.run("squeue", "-h", "-o", "%i", timeout=10).stdout.split()
            if not ids:
                return
            self.run("scancel", *ids, check=False, timeout=10)
            wait_until(
                lambda: (
                    not self.run(
                        "squeue", "-h", "-t", "R,CG,PD", "-o", "%i", timeout=10
                    ).stdout.split()
                ),
                timeout=15,
                what="jobs to end",
            )


def _usable(state: str) -> bool:
    return not state.endswith("*") and not state.startswith(("down", "drain", "fail"))
