"""The ssh provider: hosts reachable over SSH (on-prem racks, rented bare metal) become agents.

    launch(offer)  ──ssh──> mkdir; scp corral's wheel; pip install --target (no network needed)
                   ──ssh──> write the tags (instance.json); start `corral agent` detached, its
                            join token handed over on stdin, never on a command line
    instances()    ──ssh──> instance.json + is the agent's pid alive?  (found by tag: a restarted
                            control plane sees what an earlier one launched)
    terminate(ids) ──ssh──> SIGTERM the agent; its workers die with their lease; tags removed

corral talks to the hosts with the system `ssh`/`scp` clients (BatchMode, a key, a known_hosts
file): no SSH library is a dependency, and whatever the operator's ssh config can reach (jump
hosts, agents, certificates), corral can. The hosts need a Python with corral's dependencies
(`python`; the wheel is installed without them, so a host needs no network); each host joins as
the node named after it. The offers are the free hosts grouped by shape (GPUs and model, zone,
price: instance type ``ssh:<gpus>x<model>``; labels and whether it runs images), so a gang that needs several alike hosts is one
launch of that many; a launch takes the first free hosts of the shape.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Final

from corral.core.model import CapacityKind
from corral.providers.base import CapacityState, Instance, Offer, ssh_instance_type
from corral.providers.bootstrap import LABEL_FLAG
from corral.providers.errors import ProviderError, ProviderReason

__all__ = ["SshHost", "SshProvider", "build_wheel", "source_wheel"]

AGENT_PID: Final = "agent.pid"
INSTANCE_FILE: Final = "instance.json"


@dataclass(frozen=True)
class SshHost:
    """One host: where to reach it, what it offers, where corral lives on it."""

    name: str  # the node id it joins as
    address: str
    port: int = 22
    user: str = "root"
    gpus: int = 0
    gpu_model: str = "none"
    gpu_memory_mib: int = 0
    cpu_milli: int = 0
    memory_mib: int = 0
    price_per_gpu_hour: Decimal = Decimal("0")
    region: str = "default"
    zone: str = "default"
    rack: str = ""
    python: str = "python3"  # an interpreter on the host with corral's dependencies
    root: str = "/opt/corral"  # the wheel, the installed package, the agent's data dir
    agent_args: tuple[str, ...] = ()  # more `corral agent` flags (--lease, --worker-user...)
    #: labels it joins with (the provider's, then its own): `--label key=value` on the agent
    labels: tuple[tuple[str, str], ...] = ()
    #: whether it has podman, so it runs `image:` work (None: not said): `Offer.runs_images`
    runs_images: bool | None = None

    @property
    def instance_id(self) -> str:
        return f"ssh-{self.name}"


@dataclass
class SshProvider:
    """`corral.providers.base.Provider` over SSH hosts. See the module docstring.

    server: the URL agents reach the control plane at. join_token: makes a join token for one
    host (the control plane's store, or a fixed token in tests). wheel: corral's wheel to install.
    identity_file/known_hosts: the key corral logs in with and the hosts' keys it trusts.
    """

    name: str
    hosts: Sequence[SshHost]
    server: str
    join_token: Callable[[], str]
    wheel: Path | Callable[[], Path]  # a callable is called once, at the first install
    identity_file: Path
    known_hosts: Path
    timeout_s: float = 120.0
    kind: str = "ssh"
    #: it installs and starts the agent itself: the autoscaler hands it no cloud-init script
    starts_agent: bool = True
    _launched_at: dict[str, float] = field(default_factory=dict)

    # --- Provider ------------------------------------------------------------------------------

    def offers(self) -> list[Offer]:
        """One offer per shape of the free hosts (see the module docstring)."""
        taken = {i.id for i in self.instances() if i.state != CapacityState.TERMINATED}
        shapes = {_key(self._offer(h)): self._offer(h) for h in self.hosts
                  if h.instance_id not in taken and h.gpus > 0}
        return [shapes[k] for k in sorted(shapes)]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        """Start the agent on `count` free hosts of `offer`'s shape (instance type, zone,
        price). `user_data`, when given, is a shell script run on the host just before the
        agent starts (as cloud-init would)."""
        taken = {i.id for i in self.instances() if i.state != CapacityState.TERMINATED}
        free = [h for h in self.hosts if _key(self._offer(h)) == _key(offer)
                and h.instance_id not in taken]
        if len(free) < count:
            raise ProviderError(ProviderReason.NO_CAPACITY, f"{self.name}: {len(free)} free "
                                f"host(s) for {offer.instance_type}, {count} asked")
        launched = []
        for host in free[:count]:
            self._install(host)
            self._start(host, user_data, {**tags, "corral:node": host.name})
            self._launched_at[host.instance_id] = time.time()
            launched.append(Instance(host.instance_id, self.name, self._offer(host),
                                     CapacityState.JOINING, "agent started", time.time(),
                                     host.name))
        return launched

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """Stop each host's agent (SIGTERM; its workers die when their lease runs out) and
        remove its tags. Idempotent: unknown or stopped hosts are no error."""
        by_id = {h.instance_id: h for h in self.hosts}
        for iid in instance_ids:
            host = by_id.get(iid)
            if host is None:
                continue
            pid_file = shlex.quote(f"{host.root}/{AGENT_PID}")
            tags = shlex.quote(f"{host.root}/{INSTANCE_FILE}")
            self._ssh(host, f"if [ -f {pid_file} ]; then kill $(cat {pid_file}) 2>/dev/null; "
                      f"rm -f {pid_file}; fi; rm -f {tags}")

    def instances(self) -> list[Instance]:
        """Every host carrying corral's tags: READY while its agent runs, else FAILED."""
        out = []
        for host in self.hosts:
            root = shlex.quote(host.root)
            answer = self._ssh(host, f"cat {root}/{INSTANCE_FILE} 2>/dev/null || exit 0; echo; "
                               f"kill -0 $(cat {root}/{AGENT_PID} 2>/dev/null) 2>/dev/null "
                               "&& echo alive || echo dead")
            lines = [line for line in answer.splitlines() if line.strip()]
            if not lines:
                continue
            alive = lines[-1] == "alive"
            out.append(Instance(host.instance_id, self.name, self._offer(host),
                                CapacityState.READY if alive else CapacityState.FAILED,
                                "agent running" if alive else "the agent is not running",
                                self._launched_at.get(host.instance_id, 0.0), host.name))
        return out

    # --- on the host ---------------------------------------------------------------------------

    def _offer(self, h: SshHost) -> Offer:
        price = Decimal(h.price_per_gpu_hour) * h.gpus
        return Offer(provider=self.name, instance_type=ssh_instance_type(h.gpus, h.gpu_model),
                     gpu_model=h.gpu_model,
                     gpus=h.gpus, gpu_memory_mib=h.gpu_memory_mib, cpu_milli=h.cpu_milli,
                     memory_mib=h.memory_mib, price_per_hour=price,
                     capacity_kind=CapacityKind.OWNED, region=h.region, zone=h.zone,
                     source=f"config:{self.name}", as_of=time.strftime("%Y-%m-%d"),
                     runs_images=h.runs_images, labels=h.labels)

    def _wheel(self) -> Path:
        if not isinstance(self.wheel, Path):
            self.wheel = self.wheel()
        return self.wheel

    def _install(self, host: SshHost) -> None:
        root = shlex.quote(host.root)
        local = self._wheel()
        self._ssh(host, f"umask 077; mkdir -p {root}/wheels {root}/data")
        self._scp(host, local, f"{host.root}/wheels/{local.name}")
        wheel = shlex.quote(f"{host.root}/wheels/{local.name}")
        self._ssh(host, f"{shlex.quote(host.python)} -m pip install -q --no-deps --no-index "
                  f"--upgrade --target {root}/lib {wheel}")

    def _start(self, host: SshHost, user_data: str, tags: Mapping[str, str]) -> None:
        root = shlex.quote(host.root)
        args = ["-m", "corral.agent", "--server", self.server, "--node-id", host.name,
                "--data-dir", f"{host.root}/data", "--provider", self.name,
                "--region", host.region, "--zone", host.zone, "--rack", host.rack,
                "--instance-type", self._offer(host).instance_type,
                "--instance-id", host.instance_id,
                "--price", str(host.price_per_gpu_hour), "--capacity-kind", "owned",
                "--gpus", str(host.gpus), "--gpu-model", host.gpu_model,
                "--gpu-memory-mib", str(host.gpu_memory_mib), "--address", host.address,
                *(x for k, v in host.labels for x in (LABEL_FLAG, f"{k}={v}")),
                *host.agent_args]
        agent = " ".join(shlex.quote(a) for a in [host.python, *args])
        tags_json = shlex.quote(json.dumps(dict(tags), sort_keys=True))
        # The join token arrives on stdin and lives only in the agent's environment: never in
        # a command line that `ps` shows, nor in a file left behind.
        script = (f"set -e; umask 077; cd {root}; printf %s {tags_json} > {INSTANCE_FILE}; "
                  f"{user_data}\n"
                  f"read -r CORRAL_JOIN_TOKEN; export CORRAL_JOIN_TOKEN; "
                  f"PYTHONPATH={root}/lib setsid nohup {agent} >> {root}/agent.log 2>&1 "
                  f"< /dev/null & echo $! > {AGENT_PID}")
        self._ssh(host, script, stdin=self.join_token() + "\n")

    def _base(self, host: SshHost) -> list[str]:
        return ["-i", str(self.identity_file), "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"]

    def _ssh(self, host: SshHost, command: str, stdin: str = "") -> str:
        argv = ["ssh", *self._base(host), "-p", str(host.port), f"{host.user}@{host.address}",
                command]
        return self._run(host, argv, stdin)

    def _scp(self, host: SshHost, local: Path, remote: str) -> None:
        argv = ["scp", "-q", *self._base(host), "-P", str(host.port), str(local),
                f"{host.user}@{host.address}:{remote}"]
        self._run(host, argv, "")

    def _run(self, host: SshHost, argv: list[str], stdin: str) -> str:
        try:
            r = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                               timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise ProviderError(ProviderReason.TIMEOUT, f"{host.name}: ssh did not finish in "
                                f"{self.timeout_s:g} s") from None
        if r.returncode == 255:  # ssh's own failure: connection or authentication
            reason = (ProviderReason.AUTH_FAILED if "denied" in r.stderr.lower()
                      or "verification failed" in r.stderr.lower() else ProviderReason.TIMEOUT)
            raise ProviderError(reason, f"{host.name} ({host.address}:{host.port}): "
                                f"{r.stderr.strip()[-500:]}")
        if r.returncode != 0:
            raise ProviderError(ProviderReason.INVALID_REQUEST, f"{host.name}: a command "
                                f"failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return r.stdout


def _key(o: Offer) -> tuple[object, ...]:
    """A shape: hosts alike in it are one offer (labels and images too: a selector or an
    image must get a host that has them)."""
    return (o.instance_type, o.zone, o.price_per_hour, o.labels, o.runs_images is True)


def build_wheel(source: Path, out_dir: Path) -> Path:
    """corral's wheel from a source tree (pip wheel, no dependencies), for `SshProvider.wheel`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir),
                    str(source)], check=True, capture_output=True, timeout=600)
    return max(out_dir.glob("corral-*.whl"), key=lambda p: p.stat().st_mtime)


def source_wheel() -> Path:
    """corral's wheel built from the source tree this corral runs from (a checkout), into a
    cache under the user's home; the pool file's `settings.wheel` names one otherwise."""
    source = Path(__file__).resolve().parents[3]
    if not (source / "pyproject.toml").exists():
        raise ProviderError(ProviderReason.INVALID_REQUEST, "corral does not run from a source "
                            "tree: set settings.wheel to the path of corral's wheel")
    return build_wheel(source, Path.home() / ".cache" / "corral" / "wheels")
