"""`corral ssh` and `corral port-forward` into an `image:` worker's container, on real podman
(the image and storage of tests/integration/test_images_local.py): the shell opens inside the
container (its env, workdir, root filesystem; the terminal's size and a resize), its status is
returned, a hang-up ends it inside the container too (the server's idle and longest-session
limits and a client that leaves all hang up), a container that is gone is refused with a clear
error and an open shell ends with it; a port a server inside the container listens on is
forwardable and reached. Then once through a real `corral up`: `corral ssh` on a terminal lands
in the container and is closed at the server's idle limit with its shell ended inside, and
`corral port-forward` reaches the container's server; and through a real agent (`corral up
--backend agent`, one `corral agent` with podman): the same, the shell's exit status relayed
back, and a client that leaves ends the shell inside the container. Skipped where podman cannot
run."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from tests.agent.conftest import make_token
from tests.agent.harness import AgentProc
from tests.backends.conftest import eventually, make_spec
from tests.integration.podman_image import (
    APPLETS,
    IMAGE,
    container_backend,
    containers_named,
    image_runtime,
)

from corral.backends import LocalBackend
from corral.backends.containers import RUNTIME_ENV, ContainerRuntime
from corral.backends.worker_exec import container_of, worker_pid
from corral.backends.worker_ports import listening_ports
from corral.backends.worker_shell import ContainerGone, Shell, open_shell, resize
from corral.testing.corral_up import CorralServer, free_port, stop_workers
from corral.testing.terminal import Terminal

pytestmark = pytest.mark.slow  # real containers, as test_images_local.py


@pytest.fixture(scope="module")
def runtime() -> Iterator[ContainerRuntime]:
    with image_runtime((*APPLETS, "stty", "httpd", "ps")) as built:
        yield built


@pytest.fixture
def backend(tmp_path: Path, runtime: ContainerRuntime) -> Iterator[LocalBackend]:
    with container_backend(tmp_path / "work", runtime) as local:
        yield local


@pytest.fixture
def shells() -> Iterator[list[Shell]]:
    """Shells a test opened: hung up at its end, passed or failed."""
    opened: list[Shell] = []
    yield opened
    for sh in opened:
        if sh.proc.poll() is None:
            sh.hang_up()


def _running(backend: LocalBackend, wid: str, script: str, **fields: object) -> int:
    """The live `podman run` of worker 0 once its command printed `ready`."""
    backend.launch(make_spec(wid).command("/bin/sh", "-c", f"echo ready; {script}")
                   .with_(image=IMAGE, **fields).build())
    log = backend.work_dir / wid / "0" / "worker-0.log"
    eventually(lambda: log.exists() and "ready" in log.read_text(), f"{wid} to run",
               timeout=120)
    pid = worker_pid(backend.work_dir, wid, 0, 0)
    assert container_of(pid) is not None
    return pid


def _expect(sh: Shell, seen: bytearray, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([sh.master], [], [], max(left, 0))
        assert ready, f"{text!r} not seen; got {bytes(seen)!r}"
        try:
            seen += os.read(sh.master, 65536)
        except OSError:  # EIO: the shell ended
            raise AssertionError(f"{text!r} not seen; the shell ended: {bytes(seen)!r}") from None


def _processes(runtime: ContainerRuntime, name: str) -> str:
    return subprocess.run([runtime.program, "top", name, "args"], capture_output=True,
                          text=True, timeout=60, check=False).stdout


def _name(pid: int) -> str:
    box = container_of(pid)
    assert box is not None
    return box[1]


def test_a_shell_opens_inside_the_container_with_its_env_and_workdir(
        backend: LocalBackend, shells: list[Shell], tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    pid = _running(backend, "img-sh", "sleep 120", env={"STAGE": "inside"},
                   working_dir=str(cwd))
    shells.append(sh := open_shell(pid, 30, 90))
    seen = bytearray()
    # busybox-root: the image's filesystem (the host has /usr), not the host's; printf's
    # output, never the typed line the terminal echoes
    os.write(sh.master, b"stty size; printf 'S=%s\\n' \"$STAGE\"; pwd; "
             b"test -d /usr || printf 'busybox-%s\\n' root\r")
    for text in ("30 90", "S=inside", str(cwd), "busybox-root"):
        _expect(sh, seen, text)
    resize(sh.master, 33, 111)  # as the server does on the client's resize message
    deadline = time.monotonic() + 30
    while b"33 111" not in seen and time.monotonic() < deadline:
        os.write(sh.master, b"stty size\r")
        ready, _, _ = select.select([sh.master], [], [], 1.0)
        if ready:
            seen += os.read(sh.master, 65536)
    assert b"33 111" in seen, bytes(seen)
    os.write(sh.master, b"exit 3\r")
    assert sh.proc.wait(timeout=60) == 3


def test_a_hang_up_ends_the_shell_inside_the_container(
        backend: LocalBackend, shells: list[Shell], runtime: ContainerRuntime) -> None:
    """What the server does when the client leaves or at its idle / longest-session limit
    (`corral.api.shell`, the agents' relay): podman's client alone would leave the shell."""
    pid = _running(backend, "img-hup", "sleep 120")
    shells.append(sh := open_shell(pid, 24, 80))
    seen = bytearray()
    os.write(sh.master, b"echo started; sleep 987\r")
    _expect(sh, seen, "started")
    name = _name(pid)
    eventually(lambda: "sleep 987" in _processes(runtime, name), "the shell's sleep to run",
               timeout=60)
    sh.hang_up()
    eventually(lambda: "sleep 987" not in _processes(runtime, name),
               "the container shell to end at the hang-up", timeout=30)
    assert "sleep 120" in _processes(runtime, name)  # the worker itself goes on


def test_a_container_that_is_gone_is_refused_and_an_open_shell_ends_with_it(
        backend: LocalBackend, shells: list[Shell], runtime: ContainerRuntime,
        tmp_path: Path) -> None:
    pid = _running(backend, "img-gone", "sleep 120")
    shells.append(sh := open_shell(pid, 24, 80))
    seen = bytearray()
    os.write(sh.master, b"echo open\r")
    _expect(sh, seen, "open")
    subprocess.run([runtime.program, "rm", "--force", "--time", "0", _name(pid)],
                   capture_output=True, timeout=120, check=True)
    sh.proc.wait(timeout=60)  # the shell ended with its container: no hang
    # a `podman run` whose container does not exist (yet: its image still pulling): a stand-in
    # process with that command line (python runs the file named `run`) is refused, no hang
    (tmp_path / "run").write_text("import time; time.sleep(120)\n")
    stand_in = subprocess.Popen([runtime.program, "run", "--name", "corral-never-0-0-x", IMAGE],
                                executable=sys.executable, cwd=tmp_path,
                                start_new_session=True)  # a session of its own, as a runner's
    try:
        eventually(lambda: container_of(stand_in.pid), "the stand-in to start", timeout=30)
        with pytest.raises(ContainerGone, match="corral-never-0-0-x is not running"):
            open_shell(stand_in.pid, 24, 80)
        assert listening_ports(stand_in.pid) == set()
    finally:
        stand_in.kill()
        stand_in.wait()


def test_a_port_a_server_in_the_container_listens_on_is_forwardable(
        backend: LocalBackend, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("served-from-the-container\n")
    port = free_port()
    pid = _running(backend, "img-port", f"httpd -f -p 127.0.0.1:{port} -h {site}",
                   working_dir=str(site))
    # conmon runs the container outside the worker's session: found by its pid namespace
    eventually(lambda: port in listening_ports(pid), f"port {port} to be listed", timeout=60)
    assert listening_ports(pid) <= {port}  # nothing of the host's besides
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        got = b""
        while chunk := conn.recv(65536):
            got += chunk
    assert b"served-from-the-container" in got, got


def _submit(server: CorralServer, tmp_path: Path, name: str, command: str) -> str:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({
        "name": name, "queue": "default", "cpu": 0.1, "memory": "64MiB", "image": IMAGE,
        "kind": "interactive", "working_dir": str(tmp_path), "env": {"MARK": "in-the-box"},
        "command": ["/bin/sh", "-c", command]}))
    wid = str(server.cli_json("submit", str(spec))[0]["workloads"][0]["id"])  # type: ignore[index]
    with server.client() as c:
        eventually(lambda: c.get(wid).state == "running", f"{name} to run", timeout=120)
    return wid


# What the two end-to-end tests (through `corral up`, through an agent) drive the same way: a
# `corral ssh` terminal, the container's shell seen from podman, and `corral port-forward`.

@contextmanager
def _ssh(server: CorralServer, wid: str) -> Iterator[Terminal]:
    """`corral ssh wid` on a terminal, once it is raw (the shell is open); closed at the end if
    the test left it running."""
    term = Terminal(server.env(), "ssh", wid)
    try:
        term.wait_raw(timeout=120)
        yield term
    finally:
        if term.proc.poll() is None:
            term.close(timeout=0.1)


def _container(runtime: ContainerRuntime, wid: str) -> str:
    return next(n for n in containers_named(runtime).split() if n.startswith(f"corral-{wid}-"))


def _sleeping_in(runtime: ContainerRuntime, wid: str) -> str:
    """The name of wid's container, where the test's shell runs `sleep 987`."""
    name = _container(runtime, wid)
    assert "sleep 987" in _processes(runtime, name)
    return name


def _shell_ended_in(runtime: ContainerRuntime, name: str, why: str) -> None:
    eventually(lambda: "sleep 987" not in _processes(runtime, name),
               f"the shell in the container to end {why}", timeout=30)


def _forwarded_get(server: CorralServer, wid: str, port: int, path: str) -> str:
    """What `corral port-forward wid 0:port` serves at `path` (an httpd in the container)."""
    fwd = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "port-forward", wid,
                            f"0:{port}"], env=server.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert fwd.stdout is not None and fwd.stderr is not None
        line = fwd.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + fwd.stderr.read()
        local = int(line.split()[2].rsplit(":", 1)[1])
        got = httpx.get(f"http://127.0.0.1:{local}/{path}", timeout=30)
        assert got.status_code == 200, got.text
        return got.text
    finally:
        fwd.terminate()
        fwd.communicate(timeout=30)


def test_corral_ssh_and_port_forward_reach_the_container_through_corral_up(
        runtime: ContainerRuntime, tmp_path: Path) -> None:
    server = CorralServer(tmp_path / "corral", extra_env={
        RUNTIME_ENV: runtime.program, "CORRAL_API_SHELL_IDLE_S": "8"}).start()
    port = free_port()
    (tmp_path / "hello.txt").write_text("hello from the container\n")
    try:
        wid = _submit(server, tmp_path, "box", f"httpd -f -p 127.0.0.1:{port} -h {tmp_path}; "
                      "sleep 300")
        with _ssh(server, wid) as term:
            term.send("printf 'M=%s\\n' \"$MARK\"; test -d /usr || printf 'busybox-%s\\n' root; "
                      "sleep 987\r")
            term.expect("M=in-the-box", timeout=60)
            term.expect("busybox-root", timeout=60)
            name = _sleeping_in(runtime, wid)
            # no keys for 8 s: the server closes the session at its idle limit and hangs up
            assert term.proc.wait(timeout=120) != 0
            term.close()
        _shell_ended_in(runtime, name, "at the idle limit")
        assert _forwarded_get(server, wid, port, "hello.txt") == "hello from the container\n"
    finally:
        server.stop()
        stop_workers(server.data_dir)


def test_corral_ssh_and_port_forward_reach_the_container_through_an_agent(
        runtime: ContainerRuntime, tmp_path: Path) -> None:
    """The relay (`corral.agent.relayed`): the agent opens the shell and checks the port on
    its host with the same functions as the local backend."""
    server = CorralServer(tmp_path / "cp").start("--backend", "agent", "--agent-timeout", "10")
    agent = AgentProc(server.url, tmp_path / "host", "host-pod", make_token(server, 1),
                      env={RUNTIME_ENV: runtime.program})
    port = free_port()
    (tmp_path / "hello.txt").write_text("hello through the agent\n")
    try:
        agent.start()
        with server.client() as c:
            eventually(lambda: any(n.id == "host-pod" for n in c.nodes()), "the agent to join",
                       timeout=120)
        wid = eventually(lambda: _try_submit(server, tmp_path, port), "image accepted",
                         timeout=60)
        with _ssh(server, wid) as term:
            term.send("test -d /usr || printf 'busybox-%s\\n' root; exit 4\r")
            term.expect("busybox-root", timeout=60)
            assert term.close(timeout=60) == 4
        with _ssh(server, wid) as term:
            term.send("printf 'started-%s\\n' here; sleep 987\r")
            term.expect("started-here", timeout=60)
            name = _sleeping_in(runtime, wid)
            term.proc.kill()  # no goodbye: the server closes the relay, the agent hangs up
            term.close()
        _shell_ended_in(runtime, name, "when its client left")
        assert _forwarded_get(server, wid, port, "hello.txt") == "hello through the agent\n"
    finally:
        agent.stop()
        agent.kill_workers()
        server.stop()


def _try_submit(server: CorralServer, tmp_path: Path, port: int) -> str | None:
    """The job once the server accepts image (it learns of the agent's podman on a sync),
    running."""
    spec = {"name": "relayed", "queue": "default", "cpu": 0.1, "memory": 64, "image": IMAGE,
            "working_dir": str(tmp_path), "command": [
                "/bin/sh", "-c", f"httpd -f -p 127.0.0.1:{port} -h {tmp_path}; sleep 300"]}
    made = httpx.post(f"{server.url}/v1/workloads", json=spec, timeout=30,
                      headers={"Authorization": f"Bearer {server.token}"})
    if made.status_code != 201:
        time.sleep(0.5)  # not yet: asked again
        return None
    wid = str(made.json()["workloads"][0]["id"])
    with server.client() as c:
        eventually(lambda: c.get(wid).state == "running", "the relayed job to run", timeout=120)
    return wid
