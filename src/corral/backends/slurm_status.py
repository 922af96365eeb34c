"""What Slurm says of corral's jobs and nodes: the commands (``squeue``, ``sacct``, ``sinfo``),
and the `Asker` that runs a round of them at most once per interval, on a thread of its own.

Why a thread: each command is a client process forked from the control plane's process, about
0.3 s each on a busy 2-core host; asked inside the loop's poll they were a third of its time
(27 of 79 s for 1,000 one-GPU jobs, bench/slurm_launch.py). In the background a poll takes the
last round that finished and never waits. What a round may say is bounded by what it asked
about (`Answer.asked`): an attempt launched after the round began is not judged by it, since a
job not yet submitted is not a job that vanished.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from corral.backends.slurm_parse import SlurmJob, parse_sinfo, parse_squeue

__all__ = ["Answer", "Asker", "job_states", "node_states"]

Key = tuple[str, int]
#: `SlurmBackend._slurm`: run one Slurm client command
SlurmCommand = Callable[..., subprocess.CompletedProcess[str]]


def job_states(slurm: SlurmCommand, job_ids: Sequence[str]) -> dict[str, SlurmJob]:
    """State of each job Slurm knows: squeue (an array task per line), then accounting for the
    ones it has forgotten."""
    if not job_ids:
        return {}
    fmt = ["-h", "-r", "-t", "all", "-o", "%i|%T|%N|%r"]  # -r: an array task per line
    done = slurm("squeue", *fmt, f"--jobs={','.join(job_ids)}", check=False)
    if done.returncode != 0:  # an id Slurm has forgotten fails the whole call: list all
        done = slurm("squeue", *fmt)
    states = parse_squeue(done.stdout)
    forgotten = [j for j in job_ids if j not in states]
    if forgotten:
        states.update(_sacct(slurm, forgotten))
    return {j: states[j] for j in job_ids if j in states}


def _sacct(slurm: SlurmCommand, job_ids: list[str]) -> dict[str, SlurmJob]:
    """Ended jobs squeue no longer shows: accounting, else the job-completion log."""
    fmt = ["-n", "-P", "-o", "JobID,State,NodeList", f"--jobs={','.join(job_ids)}"]
    done = slurm("sacct", *fmt, check=False)
    if done.returncode != 0:  # "accounting storage is disabled": try jobcomp
        done = slurm("sacct", "--completion", *fmt, check=False)
    return parse_squeue(done.stdout) if done.returncode == 0 else {}


def node_states(slurm: SlurmCommand) -> dict[str, str]:
    return parse_sinfo(slurm("sinfo", "-h", "-N", "-o", "%N|%T").stdout)


@dataclass(frozen=True)
class Answer:
    """One round of Slurm's answers: the attempts it was about, job and node states."""

    asked: frozenset[Key]
    jobs: dict[str, SlurmJob]
    nodes: dict[str, str]


class Asker:
    """Rounds of Slurm commands, at most one per `interval_s`. background: a round runs on the
    asker's thread and `answer` returns the last one that finished (else it runs in `answer`
    and is waited for)."""

    def __init__(self, slurm: SlurmCommand, interval_s: float, background: bool) -> None:
        self.slurm, self.interval_s = slurm, interval_s
        self.next_ask = 0.0  # monotonic time of the next round
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slurm-ask") if (
            background) else None
        self._asking: Future[Answer] | None = None

    def answer(self, what: Callable[[], tuple[frozenset[Key], list[str]]]) -> Answer | None:
        """Slurm's answer a poll uses now, None if there is no new one; starts the next round
        when one is due. `what`: the attempts and job ids a round asks about, read on the
        caller's thread only when a round starts (it may look job ids up and save records)."""
        due = time.monotonic() >= self.next_ask
        if self._pool is None:
            if not due:
                return None
            self.next_ask = time.monotonic() + self.interval_s
            return self._round(*what())
        done = None
        if self._asking is not None and self._asking.done():
            asking, self._asking = self._asking, None
            done = asking.result()  # a BackendUnavailable is the poll's, as when asked in it
        if self._asking is None and due:
            self.next_ask = time.monotonic() + self.interval_s
            self._asking = self._pool.submit(self._round, *what())
        return done

    def later(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn` on the asker's thread, after the rounds already asked for (now if not in
        the background): bookkeeping the caller need not wait for."""
        if self._pool is None:
            fn(*args)
        else:
            self._pool.submit(fn, *args)

    def idle(self) -> bool:
        """No round under way (its answer, if any, is taken by the next `answer`)."""
        return self._asking is None or self._asking.done()

    def _round(self, asked: frozenset[Key], jobs: list[str]) -> Answer:
        """squeue (and sacct) while sinfo runs: two round trips in the time of one."""
        if not jobs:
            return Answer(asked, {}, {})
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slurm-sinfo") as pool:
            sinfo = pool.submit(node_states, self.slurm)
            states = job_states(self.slurm, jobs)
            return Answer(asked, states, sinfo.result() if states else {})
