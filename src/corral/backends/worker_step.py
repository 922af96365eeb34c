"""What a step beside a worker runs on the worker's own node: `corral exec`, `corral ssh` and
`corral port-forward` on engines whose nodes corral does not reach itself (Slurm: an ``srun
--jobid=<the worker's job> --overlap`` step, `corral.backends.slurm_exec`).

    python -I -S .../worker_step_main.py exec|shell|relay --work-dir W --workload ID
        --attempt A --worker N [--timeout S --max-bytes B -- ARGV | --port P]

Each finds the worker's process as the local backend does (its runner's records on the shared
work dir, checked alive by start time: `worker_exec.worker_pid`), then:

- ``exec``: runs ARGV with that process's environment, cwd and user (`worker_exec.exec_beside`)
  and prints one JSON line: the result, or ``{"error": "conflict"|"invalid", "message"}``;
- ``shell``: becomes the user's shell (exec) with that environment and cwd, on the terminal the
  step was given (``srun --pty``);
- ``relay``: checks that the worker's session listens on the port (`worker_ports`), connects to
  it on the node's loopback, prints one line (``ok``, or ``<status> <reason>`` and exits 3),
  then carries bytes between its standard streams and the connection until either side ends.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
from pathlib import Path

from corral.backends.worker_exec import _environ, exec_beside, worker_pid
from corral.backends.worker_ports import listening_ports
from corral.backends.worker_shell import _shell_of

__all__ = ["REFUSED_EXIT", "RUN_MARK", "main"]

#: the relay's exit status when it refused before carrying anything
REFUSED_EXIT = 3
CHUNK = 64 * 1024
#: a reusing pilot's mark of one run (`corral.backends.slurm_pilot.RUN_MARK`, not imported:
#: the step imports only the modules it runs, `worker_step_main`)
RUN_MARK = "CORRAL_PILOT_RUN"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral.backends.worker_step")
    p.add_argument("action", choices=("exec", "shell", "relay"))
    p.add_argument("--work-dir", required=True, type=Path)
    p.add_argument("--workload", required=True)
    p.add_argument("--attempt", required=True, type=int)
    p.add_argument("--worker", required=True, type=int)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--max-bytes", type=int, default=1 << 20)
    p.add_argument("--port", type=int, default=0)
    return p


def _exec(pid: int, argv: list[str], timeout_s: float, max_bytes: int) -> dict[str, object]:
    try:
        return vars(exec_beside(pid, argv, timeout_s=timeout_s, max_bytes=max_bytes))
    except FileNotFoundError:
        return {"error": "invalid",
                "message": f"program {argv[0]!r} is not found in the worker's PATH"}
    except PermissionError as e:
        return {"error": "invalid", "message": f"cannot run {argv[0]!r}: {e.strerror}"}


def _shell(pid: int) -> int:
    env, cwd = _environ(pid), os.readlink(f"/proc/{pid}/cwd")
    env.setdefault("TERM", "xterm-256color")
    shell = _shell_of(env)
    os.chdir(cwd)
    os.execve(shell, [shell], env)  # never returns


def _say(line: str) -> None:
    os.write(1, (line.replace("\n", " ") + "\n").encode())


def _relay(pid: int, port: int, what: str) -> int:
    ports = listening_ports(pid)
    if port not in ports:
        _say(f"403 {what} does not listen on port {port} (it listens on "
             f"{sorted(ports) or 'none'})")
        return REFUSED_EXIT
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError as e:
        _say(f"502 cannot connect to port {port}: {e.strerror or e}")
        return REFUSED_EXIT
    conn.settimeout(None)
    _say("ok")
    _carry(conn)
    return 0


def _carry(conn: socket.socket) -> None:
    """Standard input to the connection, the connection to standard output; our input's end
    is passed on as a half-close (the server may still answer), the connection's ends it."""
    sources = [0, conn.fileno()]
    while True:
        readable, _, _ = select.select(sources, [], [])
        if 0 in readable:
            data = os.read(0, CHUNK)
            if data:
                conn.sendall(data)
            else:
                sources.remove(0)
                conn.shutdown(socket.SHUT_WR)
        if conn.fileno() in readable:
            data = conn.recv(CHUNK)
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]


def _wear_the_mark(pid: int) -> None:
    """Start again (the same command) with the worker's pilot-run mark in this process's own
    environment, unless it is there already: from then on the pilot that ran the worker sees
    this step as a process of that run (its leftover check reads /proc/*/environ as each
    process started) and takes no next worker while the step lives, even in the moment
    before a shell's exec or during a relay (review R on ebef4bd). After the restart the
    worker is looked up again: one that ended before this step wore its mark is refused, so
    a step never serves a job whose pilot may have taken the next worker."""
    mark = _environ(pid).get(RUN_MARK)
    if mark is None or os.environ.get(RUN_MARK) == mark:
        return
    os.execve(sys.executable, sys.orig_argv, {**os.environ, RUN_MARK: mark})


def main(args: list[str] | None = None, *, mark: bool = False) -> int:
    """The step's actions (above). `mark`: wear the worker's pilot-run mark first
    (`_wear_the_mark`; the step's entry point asks for it, a test calling in may not)."""
    args = sys.argv[1:] if args is None else args
    cut = args.index("--") if "--" in args else len(args)  # exec's command, as given
    ns = _parser().parse_args(args[:cut])
    ns.argv = args[cut + 1:]
    what = f"worker {ns.worker} of {ns.workload}"
    try:
        pid = worker_pid(ns.work_dir, ns.workload, ns.attempt, ns.worker)
    except LookupError as e:
        if ns.action == "exec":
            _say(json.dumps({"error": "conflict", "message": str(e)}))
            return 0
        if ns.action == "relay":
            _say(f"409 {e}")
            return REFUSED_EXIT
        print(f"corral: {e}", file=sys.stderr)
        return 1
    if mark:
        _wear_the_mark(pid)  # (returns only when worn already, or the worker has none)
    if ns.action == "exec":
        if not ns.argv:
            print("corral: exec needs a command after --", file=sys.stderr)
            return 2
        _say(json.dumps(_exec(pid, ns.argv, ns.timeout, ns.max_bytes)))
        return 0
    if ns.action == "shell":
        return _shell(pid)
    return _relay(pid, ns.port, what)


if __name__ == "__main__":
    sys.exit(main())
