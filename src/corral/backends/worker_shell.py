"""`corral ssh`: an interactive shell beside a running worker of the local backend.

Like `corral exec` (`corral.backends.worker_exec`) the shell gets the worker's own environment,
working directory and user, but on a pseudo-terminal of its own: it is a session leader with
that terminal as its controlling terminal, so job control, Ctrl-C and SIGWINCH behave as over
ssh. The caller (`corral.api.shell`) moves bytes between the terminal's master side and the
client, resizes it, and ends the shell's process group when the client leaves.

A worker of an `image:` (`podman run`, `worker_exec.container_of`) gets its shell inside its
container, as `kubectl exec -it`: `podman exec -it NAME SHELL` on that terminal, so the
container's env, workdir and user (podman puts our terminal in raw mode and passes SIGWINCH on
as a resize of the container's own). A container that is not running (its image still
pulling, or the worker ending) is refused before (`ContainerGone`), not left to podman's
error. Hanging up the podman client does not end what it started: the exec session lives in
the container under a conmon of its own (measured: podman 4.3, the shell and its `sleep`
outlive a SIGHUP'd client). So the shell is started with a marker variable and a hang-up
also signals, from the host, the session of the process that carries it (`_container_session`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import termios
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from corral.backends.worker_exec import _environ, container_of

__all__ = ["ContainerGone", "Shell", "apply_control", "exit_status", "open_shell", "resize"]

#: set in a container shell's environment: finds its processes from the host at the hang-up
SHELL_MARK = "CORRAL_SHELL"
#: inside an image, the shell tried in order: the image's SHELL, then bash, then sh
_PICK = ('for s in "$SHELL" /bin/bash /bin/sh; do [ -n "$s" ] && [ -x "$s" ] && exec "$s"; '
         'done; echo "corral: no shell (bash or sh) in the image" >&2; exit 127')


class ContainerGone(OSError):
    """The worker's container is not running (not yet created, or already removed)."""

#: tried in order when the worker's environment names no SHELL that exists
_SHELLS = ("/bin/bash", "/bin/sh")


@dataclass
class Shell:
    proc: subprocess.Popen[bytes]
    master: int  # the terminal's master side: read the shell's output, write its input
    mark: str | None = None  # a container shell's SHELL_MARK value (None: a host shell)

    def hang_up(self) -> None:
        """The client left: SIGHUP to the whole session, as a dropped ssh connection; then
        SIGKILL to what ignored it (nohup'd work started from the shell stays, as over ssh).
        In a container, the same to the shell's session there (module docstring)."""
        inside = _container_session(self.mark) if self.mark else []
        for sig in (signal.SIGHUP, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            for pid in inside:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if inside:
            _kill_leader(inside[0])
        with contextlib.suppress(OSError):
            os.close(self.master)


def _container_session(mark: str) -> list[int]:
    """Host pids of the container shell marked `mark` and of its session (what a hang-up of
    its terminal would signal), the shell first; [] when it has ended. One pass over /proc."""
    needle = f"{SHELL_MARK}={mark}".encode()
    by_session: dict[int, list[int]] = {}
    leader = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            sid = os.getsid(pid)
            by_session.setdefault(sid, []).append(pid)
            if leader is None and sid == pid and needle in (entry / "environ").read_bytes():
                leader = pid
        except OSError:
            continue
    if leader is None:
        return []
    return [leader, *(p for p in by_session.get(leader, []) if p != leader)]


def _kill_leader(pid: int, wait_s: float = 2.0) -> None:
    """SIGKILL the container shell when it ignored the hang-up (polled: not our child)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _shell_of(env: dict[str, str]) -> str:
    for candidate in (env.get("SHELL", ""), *_SHELLS):
        if candidate and os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sh", path=env.get("PATH"))
    if found is None:
        raise FileNotFoundError("no shell (bash or sh) on the worker's host")
    return found


def _take_terminal() -> None:
    # in the child, after setsid and the change of user: fd 0 becomes the controlling
    # terminal (what login(1) and sshd do), so ^C reaches the foreground job
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def resize(master: int, rows: int, cols: int) -> None:
    """Set the terminal's size; the kernel sends SIGWINCH to its foreground process group."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def apply_control(master: int, text: str) -> None:
    """A client's text message: `{"resize": [rows, cols]}`; anything else is ignored (a newer
    client's message). Shared by the server (`corral.api.shell`) and the agent's relay."""
    with contextlib.suppress(ValueError, TypeError, KeyError, OSError):
        rows, cols = json.loads(text)["resize"]
        if 1 <= int(rows) <= 1000 and 1 <= int(cols) <= 1000:
            resize(master, int(rows), int(cols))


def exit_status(returncode: int) -> int:
    """As a shell reports it: the code, or 128 + the signal that killed it."""
    return returncode if returncode >= 0 else 128 - returncode


def _in_container(box: tuple[list[str], str], env: dict[str, str],
                  owner: os.stat_result | None) -> tuple[list[str], str]:
    """(argv, mark) of `podman exec -it` into the running container; ContainerGone if not."""
    runtime, name = box
    try:
        state = subprocess.run([*runtime, "container", "inspect", "--format",
                                "{{.State.Running}}", name], env=env, capture_output=True,
                               text=True, timeout=30, check=False,
                               user=owner and owner.st_uid, group=owner and owner.st_gid,
                               extra_groups=[] if owner else None)
    except subprocess.TimeoutExpired:
        raise ContainerGone(f"{os.path.basename(runtime[0])} did not answer within 30 s about "
                            f"container {name}") from None
    if state.returncode != 0 or state.stdout.strip() != "true":
        # short: a WebSocket close reason is cut at 120 bytes (`corral ssh` says what to do)
        raise ContainerGone(f"container {name} is not running (its image may still be pulling, "
                            "or the worker is ending)")
    mark = uuid.uuid4().hex
    return [*runtime, "exec", "-it", "--env", f"TERM={env['TERM']}", "--env",
            f"{SHELL_MARK}={mark}", name, "/bin/sh", "-c", _PICK], mark


def open_shell(pid: int, rows: int, cols: int) -> Shell:
    """Start a shell with the environment, cwd and user of process `pid` on a new terminal;
    inside its container when it runs in one (ContainerGone when that is not running)."""
    env, cwd = _environ(pid), os.readlink(f"/proc/{pid}/cwd")
    env.setdefault("TERM", "xterm-256color")
    st = os.stat(f"/proc/{pid}")
    as_other = os.geteuid() == 0 and st.st_uid != 0
    box = container_of(pid)
    argv, mark = (([_shell_of(env)], None) if box is None
                  else _in_container(box, env, st if as_other else None))
    master, slave = os.openpty()
    resize(master, rows, cols)
    try:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
            # preexec_fn after fork in a threaded server: safe here, one ioctl and no lock
            start_new_session=True, preexec_fn=_take_terminal,
            user=st.st_uid if as_other else None, group=st.st_gid if as_other else None,
            extra_groups=[] if as_other else None)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return Shell(proc, master, mark)
