"""`corral ssh`: an interactive shell beside a running worker of the local backend.

Like `corral exec` (`corral.backends.worker_exec`) the shell gets the worker's own environment,
working directory and user, but on a pseudo-terminal of its own: it is a session leader with
that terminal as its controlling terminal, so job control, Ctrl-C and SIGWINCH behave as over
ssh. The caller (`corral.api.shell`) moves bytes between the terminal's master side and the
client, resizes it, and ends the shell's process group when the client leaves.
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
from dataclasses import dataclass

from corral.backends.worker_exec import _environ

__all__ = ["Shell", "apply_control", "exit_status", "open_shell", "resize"]

#: tried in order when the worker's environment names no SHELL that exists
_SHELLS = ("/bin/bash", "/bin/sh")


@dataclass
class Shell:
    proc: subprocess.Popen[bytes]
    master: int  # the terminal's master side: read the shell's output, write its input

    def hang_up(self) -> None:
        """The client left: SIGHUP to the whole session, as a dropped ssh connection; then
        SIGKILL to what ignored it (nohup'd work started from the shell stays, as over ssh)."""
        for sig in (signal.SIGHUP, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)


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


def open_shell(pid: int, rows: int, cols: int) -> Shell:
    """Start a shell with the environment, cwd and user of process `pid` on a new terminal."""
    env, cwd = _environ(pid), os.readlink(f"/proc/{pid}/cwd")
    env.setdefault("TERM", "xterm-256color")
    st = os.stat(f"/proc/{pid}")
    as_other = os.geteuid() == 0 and st.st_uid != 0
    master, slave = os.openpty()
    resize(master, rows, cols)
    try:
        proc = subprocess.Popen(
            [_shell_of(env)], env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
            # preexec_fn after fork in a threaded server: safe here, one ioctl and no lock
            start_new_session=True, preexec_fn=_take_terminal,
            user=st.st_uid if as_other else None, group=st.st_gid if as_other else None,
            extra_groups=[] if as_other else None)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return Shell(proc, master)
