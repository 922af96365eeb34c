"""A CLI command on a pseudo-terminal of the test's own, as a user's terminal: `corral ssh` is
typed into and read from as a person would (pexpect's habit: `expect` reads until a text
appears). Used by the ssh tests on the local backend and through agents."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

__all__ = ["Terminal", "set_size"]


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """`python -m corral.cli.main ARGS...` on a pty of 40 x 100, with `env`."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.master, slave = pty.openpty()
        set_size(slave, 40, 100)
        self.proc = subprocess.Popen([sys.executable, "-m", "corral.cli.main", *args],
                                     env=env, stdin=slave, stdout=slave, stderr=slave,
                                     close_fds=True)
        os.close(slave)
        self.seen = b""

    def wait_raw(self, timeout: float = 30.0) -> None:
        """Until the CLI has its terminal in raw mode (no echo): the shell is open."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ECHO:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.seen
            self.read(0.1)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not self.read(left):
                raise AssertionError(f"{text!r} not seen; got "
                                     f"{self.seen.decode(errors='replace')!r}")

    def read(self, timeout: float) -> bool:
        """What the CLI wrote within `timeout` (added to `seen`); False when nothing."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the CLI ended
            return False
        self.seen += data
        return bool(data)

    def close(self, timeout: float = 20.0) -> int:
        """The CLI's exit status, once it ended (killed after `timeout`)."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            while self.read(0.1):  # drain
                pass
            os.close(self.master)
        return code
