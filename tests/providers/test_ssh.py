"""The ssh provider against real sshd: two Debian openssh-server daemons on free loopback ports
(throwaway host keys, an authorized key in a temp dir), as two "hosts" of a rack. corral
installs its wheel there, starts the agents, places a gang across them, and terminates them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from corral.providers.base import TAG_CLUSTER, CapacityState
from corral.providers.errors import ProviderError, ProviderReason
from corral.providers.ssh import AGENT_PID, SshHost, SshProvider, build_wheel
from corral.testing.corral_up import CorralServer, free_port

SSHD = "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (Path(SSHD).exists() and os.geteuid() == 0),
                                 reason="needs Debian's openssh-server and root "
                                 "(scripts/install-system-deps)")]


@dataclass
class Sshd:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, root: Path, authorized: Path) -> Sshd:
        root.mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(root / "host_key")], check=True)
        shutil.copy(authorized, root / "authorized_keys")
        port = free_port()
        (root / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd.pid\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        with open(root / "sshd.log", "wb") as log:  # the daemon keeps its own descriptor
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return cls(root, port, proc)
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(f"sshd did not listen: {(root / 'sshd.log').read_text()}")

    def known_host(self) -> str:
        key = (self.root / "host_key.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(REPO, tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def rack(tmp_path: Path) -> Iterator[tuple[list[Sshd], Path, Path]]:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    daemons = [Sshd.start(tmp_path / f"sshd-{i}", key.with_suffix(".pub")) for i in range(2)]
    known = tmp_path / "known_hosts"
    known.write_text("".join(d.known_host() for d in daemons))
    try:
        yield daemons, key, known
    finally:
        for d in daemons:
            d.stop()


def _hosts(tmp: Path, daemons: list[Sshd]) -> list[SshHost]:
    return [SshHost(name=f"rack-{i}", address="127.0.0.1", port=d.port, gpus=4,
                    gpu_model="virtual-gpu", gpu_memory_mib=81920,
                    price_per_gpu_hour=Decimal("1.50"), rack="r1", python=sys.executable,
                    root=str(tmp / f"host-{i}"), labels=(("team", "vision"),),
                    agent_args=("--worker-user", "same", "--poll-wait", "0.5", "--lease", "5"))
            for i, d in enumerate(daemons)]


def test_corral_installs_starts_and_stops_agents_over_ssh(
        rack: tuple[list[Sshd], Path, Path], wheel: Path, tmp_path: Path) -> None:
    daemons, key, known = rack
    server = CorralServer(tmp_path / "cp").start("--backend", "agent", "--agent-timeout", "10")
    hosts = _hosts(tmp_path, daemons)
    made = json.loads(server.cli("agent-tokens", "create", "--uses", "2", "--json").stdout)
    provider = SshProvider("rack", hosts, server.url, lambda: str(made["token"]), wheel, key,
                           known)
    try:
        (offer,) = provider.offers()  # two alike hosts: one shape, two of it free
        assert offer.instance_type == "ssh:4xvirtual-gpu"
        assert offer.price_per_gpu_hour == Decimal("1.50")
        assert offer.labels == (("team", "vision"),)  # the pool file's, passed as --label
        tags = {TAG_CLUSTER: "test"}
        launched = provider.launch(offer, 2, user_data="", tags=tags)
        assert [i.state for i in launched] == [CapacityState.JOINING] * 2
        assert provider.offers() == []  # both hosts are taken now
        with server.client() as c:
            deadline = time.monotonic() + 60
            while {n.id for n in c.nodes()} != {"rack-0", "rack-1"}:
                assert time.monotonic() < deadline, [h.root for h in hosts]
                time.sleep(0.3)
            assert {(n.provider, n.price_per_gpu_hour) for n in c.nodes()} == {("rack", 1.5)}
            assert all(n.labels.get("team") == "vision" for n in c.nodes()), c.nodes()
            wid = c.submit({"name": "over-ssh", "queue": "default", "workers": 2, "gpus": 4,
                            "node_selector": {"team": "vision"},
                            "cpu": 0.1, "memory": 64, "command": [
                                sys.executable, "-c", "import corral, os; "
                                "print(os.environ['CORRAL_NODE_ID'], corral.__file__)"]}
                           ).group_id
            assert c.wait(wid, timeout_s=90).state == "succeeded"
            logs = [c.logs(wid, worker=w).data for w in (0, 1)]
        assert {line.split()[0] for line in logs} == {"rack-0", "rack-1"}
        for host in hosts:  # the agent runs the wheel corral installed, and keeps its token hidden
            pid = int((Path(host.root) / AGENT_PID).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert "corral.agent" in cmdline and "cjt_" not in cmdline
            assert f"PYTHONPATH={host.root}/lib".encode() in environ
            assert (Path(host.root) / "lib" / "corral" / "agent" / "runtime.py").exists()
        found = provider.instances()
        assert sorted((i.id, i.state) for i in found) == [
            ("ssh-rack-0", CapacityState.READY), ("ssh-rack-1", CapacityState.READY)]
        provider.terminate([i.id for i in found])
        provider.terminate([i.id for i in found])  # idempotent
        assert provider.instances() == []
        assert len(provider.offers()) == 1
    finally:
        provider.terminate([h.instance_id for h in hosts])
        server.stop()


def test_a_key_the_host_does_not_accept_is_auth_failed(
        rack: tuple[list[Sshd], Path, Path], wheel: Path, tmp_path: Path) -> None:
    daemons, _, known = rack
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    provider = SshProvider("rack", _hosts(tmp_path, daemons), "http://127.0.0.1:1",
                           lambda: "x", wheel, stranger, known)
    with pytest.raises(ProviderError) as e:
        provider.instances()
    assert e.value.reason_code == ProviderReason.AUTH_FAILED


def test_a_pool_file_ssh_provider_is_rented_for_waiting_work_and_returned_when_idle(
        rack: tuple[list[Sshd], Path, Path], wheel: Path, tmp_path: Path) -> None:
    """`kind: ssh` in the pool file: `corral up` builds the real provider; the pool starts
    empty, a gang that only its hosts fit is accepted, the autoscaler starts both agents over
    ssh, the gang runs across them, and once idle they are drained and stopped."""
    daemons, key, known = rack
    hosts = [{"name": f"rack-{i}", "address": "127.0.0.1", "port": d.port, "gpus": 4,
              "gpu_model": "virtual-gpu", "gpu_memory": "80GiB", "cpu": 16, "memory": "64GiB",
              "price_per_gpu_hour": 1.5, "python": sys.executable,
              "root": str(tmp_path / f"host-{i}")} for i, d in enumerate(daemons)]
    pool = tmp_path / "pool.yaml"
    pool.write_text(json.dumps({
        "providers": [{"name": "rack", "kind": "ssh", "max_nodes": 2, "settings": {
            "hosts": hosts, "identity_file": str(key), "known_hosts": str(known),
            "wheel": str(wheel),
            "agent_args": ["--worker-user", "same", "--poll-wait", "0.5", "--lease", "5"]}}],
        "queues": [{"name": "default", "quota_gpus": 8}],
        "autoscaler": {"every": 1, "idle_timeout": 5}}))
    server = CorralServer(tmp_path / "cp", pool=pool)
    server.extra_env = {"CORRAL_ADVERTISE_URL": server.url}
    server.start("--backend", "agent", "--agent-timeout", "10")
    try:
        with server.client() as c:
            assert c.nodes() == []
            wid = c.submit({"name": "rented", "queue": "default", "workers": 2, "gpus": 4,
                            "cpu": 0.1, "memory": 64, "command": [
                                sys.executable, "-c", "import os; print(os.environ['CORRAL_NODE_ID'])"]}
                           ).group_id
            assert c.wait(wid, timeout_s=180).state == "succeeded"
            assert {c.logs(wid, worker=w).data.split()[0] for w in (0, 1)} == {"rack-0", "rack-1"}
            deadline = time.monotonic() + 90
            while any((Path(h["root"]) / AGENT_PID).exists() for h in hosts):
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.5)
            actions = [(e.action, e.target) for e in c.audit(actor="autoscaler").items]
        assert ("autoscale.launch", "ssh-rack-0,ssh-rack-1") in actions  # one launch of two
        assert {t for a, t in actions if a == "autoscale.terminate"} == {"ssh-rack-0",
                                                                          "ssh-rack-1"}
    finally:
        for h in hosts:  # stop any agent left, by its pid file
            pid = Path(h["root"]) / AGENT_PID
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], check=False)
        server.stop()
