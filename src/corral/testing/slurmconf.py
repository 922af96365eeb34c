"""The slurm.conf and gres.conf of a one-host test Slurm (pure: text in, text out).

Every choice here was found by trying it against Debian 12's Slurm 22.05 inside a container:

* ``SlurmdParameters=config_overrides``: each fake node reports the CPUs and memory written here,
  not the host's, so three 4-CPU "GPU nodes" fit on a 2-core machine.
* Several slurmd on one host: one ``NodeName`` line per node with ``NodeHostname=localhost`` and
  its own ``Port``; each slurmd is started with ``-N <name>`` (Slurm's "multiple slurmd" mode).
  ``%n`` in SlurmdSpoolDir/SlurmdPidFile/SlurmdLogFile keeps their files apart.
* No cgroups (we run in a container): ``ProctrackType=proctrack/linuxproc``,
  ``TaskPlugin=task/none``, ``JobAcctGatherType=jobacct_gather/none``.
* GPUs: ``File=`` must name character devices or slurmd rejects them ("not a valid character or
  block device") and then sets no CUDA_VISIBLE_DEVICES. The harness points ``nvidia<i>`` symlinks
  at /dev/null: a real character device, harmless to open.
* Fractional GPUs: 22.05 has ``gres/shard``. Shards must be tied to a GPU file (``Count`` per
  ``File`` line); a bare ``Name=shard Count=N`` registers but nothing can ever be allocated.
  In 22.05 a job's shards on a node come from ONE GPU (no MULTIPLE_SHARING_GRES_PJ yet), so
  ``--gres=shard:k`` needs ``k <= shards_per_gpu``.
* Accounting: only accounting_storage/none and /slurmdbd ship, and slurmdbd needs MySQL; so
  accounting is off and ``jobcomp/filetxt`` records finished jobs. Plain ``sacct`` answers
  "Slurm accounting storage is disabled"; ``sacct --completion`` (``-c``) reads the job-completion
  file and works (JobID, JobName, State, ExitCode, NodeList, Start/End...). ``squeue`` and
  ``scontrol show job`` keep finished jobs for MinJobAge seconds.
* Fast node-failure detection: with SlurmdTimeout=3 and MessageTimeout=3 a kill -9'd slurmd
  shows "not responding" (``idle*``) after about 5-7 s and ``down*`` after about 8-12 s.
  MessageTimeout matters as much as SlurmdTimeout: a ping to a dead slurmd hangs until it
  expires (MessageTimeout=5 gave 9 s and 10-16 s). ``ReturnToService=2`` brings a restarted
  slurmd back to ``idle`` on its own as soon as it registers (about 0.2 s).
* Quick job starts: ``SchedulerParameters=batch_sched_delay=0`` (default 3 s) lets a submitted
  batch job start within about 1 s; the very first scheduling pass still comes ~3 s after
  slurmctld starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SlurmLayout", "SlurmNode", "SlurmSettings", "render_gres_conf", "render_slurm_conf"]


@dataclass(frozen=True)
class SlurmNode:
    """One fake compute node: its name and the port its slurmd listens on."""

    name: str
    port: int


@dataclass(frozen=True)
class SlurmSettings:
    """Knobs of the test cluster. Defaults favour fast failure detection and quick teardown."""

    cpus_per_node: int = 4
    memory_mb: int = 4096
    gpus_per_node: int = 4
    gpu_type: str | None = None  # e.g. "h100": then jobs may ask --gres=gpu:h100:2
    shards_per_gpu: int = 2  # 0 disables gres/shard
    partition: str = "gpu"
    slurmd_timeout_s: int = 3
    message_timeout_s: int = 3  # also bounds how long a ping to a dead slurmd hangs
    kill_wait_s: int = 2  # SIGTERM -> SIGKILL grace for cancelled/timed-out jobs
    min_job_age_s: int = 300  # how long squeue/scontrol keep finished jobs
    #: seconds between backfill passes (Slurm's default 30 when None); heterogeneous jobs
    #: start only in a backfill pass
    backfill_interval_s: int | None = None

    def __post_init__(self) -> None:
        for name in ("cpus_per_node", "memory_mb", "slurmd_timeout_s", "message_timeout_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"SlurmSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0 or self.shards_per_gpu < 0:
            raise ValueError("SlurmSettings.gpus_per_node and shards_per_gpu must be >= 0")
        if self.shards_per_gpu and not self.gpus_per_node:
            raise ValueError("SlurmSettings.shards_per_gpu needs gpus_per_node >= 1")


@dataclass(frozen=True)
class SlurmLayout:
    """Where everything of one test cluster lives (all under ``root``) and on which ports."""

    root: Path
    controller_host: str
    controller_port: int
    nodes: tuple[SlurmNode, ...]

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.sock"

    @property
    def slurm_conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def jobcomp_log(self) -> Path:
        return self.log_dir / "jobcomp.txt"

    def device_file(self, index: int) -> Path:
        return self.root / "dev" / f"nvidia{index}"


def _gres_for_node(s: SlurmSettings) -> str:
    parts = []
    if s.gpus_per_node:
        typed = f"gpu:{s.gpu_type}:" if s.gpu_type else "gpu:"
        parts.append(f"{typed}{s.gpus_per_node}")
    if s.shards_per_gpu:
        parts.append(f"shard:{s.shards_per_gpu * s.gpus_per_node}")
    return f" Gres={','.join(parts)}" if parts else ""


def render_slurm_conf(layout: SlurmLayout, s: SlurmSettings) -> str:
    """slurm.conf text for ``layout`` and ``s``. Pure."""
    r = layout.root
    gres_types = ",".join(
        t for t, on in (("gpu", s.gpus_per_node), ("shard", s.shards_per_gpu)) if on
    )
    lines = [
        "ClusterName=corraltest",
        f"SlurmctldHost={layout.controller_host}(127.0.0.1)",
        f"SlurmctldPort={layout.controller_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        f"StateSaveLocation={r}/state",
        f"SlurmdSpoolDir={r}/spool/%n",
        f"SlurmctldPidFile={r}/run/slurmctld.pid",
        f"SlurmdPidFile={r}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={layout.log_dir}/slurmctld.log",
        f"SlurmdLogFile={layout.log_dir}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={layout.jobcomp_log}",
        "SlurmdParameters=config_overrides",
        f"SlurmdTimeout={s.slurmd_timeout_s}",
        f"SlurmctldTimeout={max(s.slurmd_timeout_s, 5)}",
        f"MessageTimeout={s.message_timeout_s}",
        f"KillWait={s.kill_wait_s}",
        f"MinJobAge={s.min_job_age_s}",
        "ReturnToService=2",
        "InactiveLimit=0",
        "SchedulerParameters=batch_sched_delay=0" + (
            f",bf_interval={s.backfill_interval_s}" if s.backfill_interval_s else ""),
    ]
    if gres_types:
        lines.append(f"GresTypes={gres_types}")
    for node in layout.nodes:
        lines.append(
            f"NodeName={node.name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={node.port} "
            f"CPUs={s.cpus_per_node} RealMemory={s.memory_mb}{_gres_for_node(s)} State=UNKNOWN"
        )
    names = ",".join(n.name for n in layout.nodes)
    lines.append(f"PartitionName={s.partition} Nodes={names} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def render_gres_conf(layout: SlurmLayout, s: SlurmSettings) -> str:
    """gres.conf text: every node has the same fake GPU device files (one host). Pure."""
    lines = []
    typed = f" Type={s.gpu_type}" if s.gpu_type else ""
    for i in range(s.gpus_per_node):
        lines.append(f"Name=gpu{typed} File={layout.device_file(i)}")
    for i in range(s.gpus_per_node if s.shards_per_gpu else 0):
        lines.append(f"Name=shard Count={s.shards_per_gpu} File={layout.device_file(i)}")
    return "\n".join(lines) + "\n"
