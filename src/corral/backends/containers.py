"""`image:` on the local backend (and on agents, which run workers the same way): each worker
runs as `podman run ... IMAGE COMMAND` under its runner, so the runner's records, logs, stop
and exit rules stay those of a host process.

What the container gets (`run_argv`), and why:

    --rm --name corral-<workload>-<attempt>-<worker>-<work dir hash>
                      named so the runner can remove it (`remove_argv`) when it kills: podman's
                      conmon is not in the worker's process group, so a SIGKILL to `podman run`
                      alone would leave the container running (and, on an agent whose lease
                      expired, running twice)
    --init            catatonit as pid 1: a command without a SIGTERM handler still ends on
                      SIGTERM (pid 1 ignores signals it has no handler for)
    --network=host    ports, CORRAL_MASTER_ADDR/PORT and `corral port-forward` as on the host
    --ipc=host        the host's /dev/shm, as a process on the node has (podman's own is 64 MiB,
                      too small for PyTorch's data loader workers)
    --env NAME        every contract variable, the spec's env and its secrets, by name only:
                      podman takes each value from its own environment (the runner's), so no
                      value is on a command line that `ps` shows
    -v PATH:PATH      the working directory (-w), the checkpoint directory, the attempt's
                      directory read-only (the deadline file appears there) and the worker's
                      progress folder, each at its host path so every CORRAL_* path holds inside;
                      the spec's volumes at their `mount`, `:ro` where asked
    --user UID:GID    with worker users (corral runs as root), the queue's user, as on the host
    --device nvidia.com/gpu=I   each planned device through NVIDIA's CDI spec, where the host has
                      one; inside, CUDA_VISIBLE_DEVICES is then 0..n-1 (the container's view, as
                      on Kubernetes). A host without GPU device files hands none (said in the log)
    --ulimit nofile=H:H --ulimit nproc=N:N
                      podman's own defaults (nofile 1048576) exceed what a process without
                      CAP_SYS_RESOURCE may set (crun: "setrlimit RLIMIT_NOFILE: Operation not
                      permitted"); H is this process's hard limit. podman 4.3 lowers its own
                      nproc to 32768 before it starts crun (measured on Debian 12), so N is at
                      most that.
    --pull=missing    the runtime's default; `never` for images built on the host (tests)

The stop contract is the runner's: SIGTERM to `podman run`, which proxies it to the container
(--sig-proxy, on by default), then at the deadline `podman rm -f -t 0 NAME` (`podman stop -t`
with the grace already spent). The exit code is the container's (podman's own failures are 125,
126 and 127, as a shell's).

Where it does not run: no podman on PATH, or a cgroup layout crun refuses (hybrid, with
controllers left on the cgroup2 hierarchy: "cgroups in hybrid mode not supported, drop all
controllers from cgroupv2"); `scripts/install-system-deps` installs podman and mounts such
controllers on v1 as systemd does in hybrid mode. Then the spec is refused, naming image.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from corral.backends.base import LaunchSpec
from corral.backends.progress import progress_path
from corral.core.model import WorkerAssignment

if TYPE_CHECKING:
    from corral.backends.worker_users import WorkerIdentity

__all__ = [
    "CDI_DIRS",
    "RUNTIME_ENV",
    "SETUP_ENV",
    "ContainerRuntime",
    "ContainerWorker",
    "Mount",
    "agent_dry_run_note",
    "container_gpu_env",
    "container_name",
    "container_worker",
    "detect_runtime",
    "dry_run_note",
    "gpu_handout",
    "log_note",
    "node_container",
    "runtime_problem",
]

#: the program `detect_runtime` uses instead of podman (a wrapper with --root, say)
RUNTIME_ENV: Final = "CORRAL_CONTAINER_RUNTIME"
#: where CDI specs live (the CDI spec's own search path)
CDI_DIRS: Final = ("/etc/cdi", "/var/run/cdi")
NVIDIA_CDI_KIND: Final = "nvidia.com/gpu"
_PODMAN_NPROC_CAP: Final = 32768  # podman 4.3 lowers its own RLIMIT_NPROC to this (see above)
_NOFILE_CAP: Final = 1048576  # podman's own default for a rootful container
_HYBRID_UNIFIED: Final = Path("/sys/fs/cgroup/unified/cgroup.controllers")


@dataclass(frozen=True)
class Mount:
    """A host directory or file at `target` inside the container."""

    source: str
    target: str
    read_only: bool = False

    def arg(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclass(frozen=True)
class ContainerRuntime:
    """podman (or a program that takes podman's arguments: tests use a wrapper that adds
    --root/--runroot). pull: podman's --pull policy. cdi: the host has NVIDIA's CDI spec.
    gpu_files: the host has NVIDIA device files (real GPUs)."""

    program: str = "podman"
    pull: str = "missing"
    cdi: bool = False
    gpu_files: bool = False

    def run_argv(self, image: str, command: Sequence[str], *, name: str,
                 env_names: Sequence[str], mounts: Sequence[Mount], workdir: str | None,
                 devices: Sequence[int], user: tuple[int, int] | None = None,
                 env_values: Mapping[str, str] | None = None) -> list[str]:
        """The worker's argv. env_names: passed by name (values from podman's environment);
        env_values: set on the command line (only values that are no secret)."""
        argv = [self.program, "run", "--rm", "--name", name, "--init", "--network=host",
                "--ipc=host", f"--pull={self.pull}", *_ulimits()]
        for key in sorted(env_names):
            argv += ["--env", key]
        for key, value in sorted((env_values or {}).items()):
            argv += ["--env", f"{key}={value}"]
        for m in mounts:
            argv += ["-v", m.arg()]
        if workdir:
            argv += ["-w", workdir]
        if user is not None:
            argv += ["--user", f"{user[0]}:{user[1]}"]
        if self.cdi:
            for d in devices:
                argv += ["--device", f"{NVIDIA_CDI_KIND}={d}"]
        return [*argv, image, *command]

    def remove_argv(self, name: str) -> list[str]:
        """Kill and remove the container now (no grace: the runner's deadline has passed or the
        worker ended); no error when it is already gone."""
        return [self.program, "rm", "--force", "--ignore", "--time", "0", name]


def _ulimits() -> list[str]:
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], _NOFILE_CAP)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], _PODMAN_NPROC_CAP)
    if nofile == resource.RLIM_INFINITY:
        nofile = _NOFILE_CAP
    if nproc == resource.RLIM_INFINITY:
        nproc = _PODMAN_NPROC_CAP
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def container_name(work_dir: Path, workload_id: str, attempt: int, worker: int) -> str:
    """Unique per worker and per work dir (two control planes on one host, as tests run)."""
    tag = hashlib.sha256(str(work_dir).encode()).hexdigest()[:8]
    return f"corral-{workload_id}-{attempt}-{worker}-{tag}"


def gpu_handout(runtime: ContainerRuntime, devices: Sequence[int]) -> tuple[str | None, str]:
    """(refusal, note) for handing `devices` to a container: a refusal where the host has
    NVIDIA GPUs but no CDI spec to hand them with; else a note for the log and the dry run."""
    if not devices:
        return None, ""
    if runtime.cdi:
        return None, (f"GPUs {list(devices)} handed in through CDI ({NVIDIA_CDI_KIND}); "
                      f"inside, CUDA_VISIBLE_DEVICES={_local_indices(devices)}")
    if runtime.gpu_files:
        return ("this host has NVIDIA GPUs but no CDI spec to hand them to a container: run "
                "`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (NVIDIA Container "
                "Toolkit), or remove image"), ""
    return None, (f"this host has no GPU device files: the container gets none of the planned "
                  f"GPUs {list(devices)} (a virtual inventory)")


def dry_run_note(runtime: ContainerRuntime, image: str, gpus: bool) -> str:
    """What `image:` will do on this host, for the dry run."""
    handout = ""
    if gpus and runtime.cdi:
        handout = (f"; its GPUs are handed in through CDI ({NVIDIA_CDI_KIND}), numbered from 0 "
                   "in CUDA_VISIBLE_DEVICES")
    elif gpus:
        handout = "; " + (gpu_handout(runtime, [0])[0] or "this host has no GPU device files: "
                          "the container gets none of the planned GPUs (a virtual inventory)")
    return (f"image: each worker runs as `{Path(runtime.program).name} run {image}` on its "
            f"node (pull: {runtime.pull}; host network; the working dir, checkpoint dir and "
            "volumes mounted at their paths; env and secrets passed by name; a stop sends "
            f"SIGTERM, the container is removed at the deadline){handout}")


def agent_dry_run_note(image: str, hosts: Sequence[str]) -> str:
    """What `image:` will do on the agent backend, for the dry run: which hosts report a
    container runtime (`corral.agent.host`), and the local backend's container on each."""
    shown = ", ".join(hosts[:10]) + (f" and {len(hosts) - 10} more" if len(hosts) > 10 else "")
    return (f"image: each worker runs as `podman run {image}` on its agent's host, placed only "
            f"on hosts whose agent reports podman ({shown or 'none now'}); as on the local "
            "backend: host network; the working dir, checkpoint dir and volumes mounted at "
            "their paths; env and secrets passed by name; a stop sends SIGTERM, the container "
            "is removed at the deadline; GPUs through CDI where the host has NVIDIA's spec")


def container_gpu_env(runtime: ContainerRuntime, devices: Sequence[int]) -> dict[str, str]:
    """The device variables the container sees instead of the host's indices."""
    if runtime.cdi and devices:
        return {"CUDA_VISIBLE_DEVICES": _local_indices(devices)}
    return {}


def _local_indices(devices: Sequence[int]) -> str:
    return ",".join(str(i) for i in range(len(devices)))


def runtime_problem(program: str | None = None) -> str | None:
    """Why containers cannot run on this host (None: they can, as far as can be seen without
    starting one). program: as `detect_runtime` takes it."""
    program = program or os.environ.get(RUNTIME_ENV) or "podman"
    if shutil.which(program) is None:
        return f"{program} is not installed on this host (scripts/install-system-deps installs it)"
    try:
        left = _HYBRID_UNIFIED.read_text().split()
    except OSError:
        left = []  # no hybrid layout: cgroup v1 only, or v2 at /sys/fs/cgroup
    if left:
        return (f"this host mounts cgroups in hybrid mode with {', '.join(left)} left on the "
                "cgroup2 hierarchy, which crun refuses: mount them as v1 hierarchies (as "
                "scripts/install-system-deps does)")
    return None


def detect_runtime(program: str | None = None, **options: Any) -> ContainerRuntime | None:
    """podman when it can run here, with what the host offers for GPUs; else None. program:
    else $CORRAL_CONTAINER_RUNTIME (a program that takes podman's arguments), else podman."""
    program = program or os.environ.get(RUNTIME_ENV) or "podman"
    if runtime_problem(program) is not None:
        return None
    return ContainerRuntime(program=program, cdi=_has_nvidia_cdi(),
                            gpu_files=os.path.exists("/dev/nvidiactl"), **options)


def _has_nvidia_cdi() -> bool:
    for folder in CDI_DIRS:
        try:
            entries = sorted(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.suffix in (".yaml", ".yml", ".json") and _names_kind(entry):
                return True
    return False


def _names_kind(path: Path) -> bool:
    try:
        return NVIDIA_CDI_KIND in path.read_text(errors="replace")
    except OSError:
        return False


SETUP_ENV: Final = "CORRAL_SETUP"  # the spec's setup lines, handed to the prologue by name
# setup in a shell of its own inside the container, then the command in its place (the pod's
# prologue on Kubernetes does the same): setup's effects (pip install) are the command's
_PROLOGUE: Final = (f'/bin/sh -c "${SETUP_ENV}" || {{ rc=$?; echo "corral: setup exited $rc; '
                    'the command was not started" >&2; exit "$rc"; }\nexec "$@"')


@dataclass(frozen=True)
class ContainerWorker:
    """What one worker's runner is given for an `image:` spec: the argv after its `--`, the
    variables to add to its environment (podman passes them on by name), and the container's
    name (`--container`)."""

    argv: list[str]
    env: dict[str, str]
    name: str


def container_worker(runtime: ContainerRuntime, spec: LaunchSpec, assignment: WorkerAssignment,
                     contract_env: Mapping[str, str], work_dir: Path, attempt_dir: Path,
                     cwd: str, user: WorkerIdentity | None) -> ContainerWorker:
    """Worker `assignment` of an `image:` spec as a container (module docstring).
    contract_env: the worker's own variables (contract, the spec's env and secrets), passed in
    by name; the host's inherited ones stay out (the image has its own PATH, HOME, ...). cwd:
    the runner's (working_dir or the workdir's copy; "" for the image's own). Pure."""
    assert spec.image is not None
    volumes = [Mount(str(v["host_path"]), str(v["mount"]), bool(v.get("read_only")))
               for v in spec.volumes if v.get("host_path")]
    return node_container(
        runtime, spec.image, spec.argv(),
        name=container_name(work_dir, spec.workload_id, spec.attempt, assignment.worker),
        contract_env=contract_env, attempt_dir=attempt_dir,
        progress_dir=progress_path(attempt_dir, assignment.worker).parent, cwd=cwd,
        checkpoint_dir=spec.checkpoint_dir, volumes=volumes, devices=assignment.devices,
        setup=spec.setup, user=None if user is None else (user.uid, user.gid))


def node_container(runtime: ContainerRuntime, image: str, command: Sequence[str], *, name: str,
                   contract_env: Mapping[str, str], attempt_dir: Path, progress_dir: Path,
                   cwd: str, checkpoint_dir: str | None, volumes: Sequence[Mount],
                   devices: Sequence[int], setup: str | None,
                   user: tuple[int, int] | None = None) -> ContainerWorker:
    """A worker as a container on the node it runs on, from plain values (the local backend
    and agents through `container_worker`; Ray's node hosts directly). Pure."""
    env, argv = dict(contract_env), list(command)
    if setup is not None:
        argv, env[SETUP_ENV] = ["/bin/sh", "-c", _PROLOGUE, "corral-setup", *argv], setup
    shown = container_gpu_env(runtime, devices)  # device indices: no secret, on the line
    mounts = [Mount(str(attempt_dir), str(attempt_dir), read_only=True),  # the deadline file
              Mount(str(progress_dir), str(progress_dir))]
    if cwd:
        mounts.append(Mount(cwd, cwd))
    if checkpoint_dir:
        mounts.append(Mount(checkpoint_dir, checkpoint_dir))
    run = runtime.run_argv(image, argv, name=name, env_names=sorted(set(env) - set(shown)),
                           mounts=[*mounts, *volumes], workdir=cwd or None, devices=devices,
                           user=user, env_values=shown)
    return ContainerWorker(run, env, name)


def log_note(log: str, runtime: ContainerRuntime, spec: LaunchSpec, worker: int,
                work_dir: Path) -> None:
    """The worker log's first line: the image, the container, how GPUs are handed in."""
    devices = next(a.devices for a in spec.assignments if a.worker == worker)
    _, handout = gpu_handout(runtime, devices)
    name = container_name(work_dir, spec.workload_id, spec.attempt, worker)
    line = f"[corral] image {spec.image} in container {name}" + (f": {handout}" if handout
                                                                  else "")
    with open(log, "a", encoding="utf-8") as f:
        f.write(line + "\n")
