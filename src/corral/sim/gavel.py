"""Gavel's traces and measured throughputs: the heterogeneity experiment.

Data: ../shared/data/gavel (from stanford-futuredata/gavel, MIT; Narayanan et al., OSDI 2020).
`simulation_throughputs.json` holds the steps/s of 26 job types alone on a V100, P100 and K80 at
1, 2, 4 and 8 GPUs; each `*.trace` line is one job: type, command, steps argument, needs data
dir, total steps, arrival time (s), scale factor (GPUs).

Rules (stated so that the results compare with Gavel's own simulator on the same converted
traces, `write_converted`):

- **Run time** on a GPU type = total steps / the job's throughput there; a job never spans types.
- **Unmeasured (type, GPU count)**: the throughput of the largest measured count below it, scaled
  by the ratio of GPU counts (16 GPUs of a type measured up to 8: T(8) x 16 / 8). The converted
  throughputs file carries these derived entries, so Gavel's simulator reads the same numbers.
- **Too large**: a job asking for more GPUs than one type has (a 64-GPU job on 36 + 36 + 36) can
  never run on either simulator and is left out of both (counted in the report's notes).
- **Cluster**: 36 V100 + 36 P100 + 36 K80, one GPU per server as Gavel's simulator defaults
  (`--num_gpus_per_server 1:1:1`). In corral each GPU is a node; a job of s GPUs is a gang of s
  one-GPU workers; each type is its own region, so a gang stays on one type (the core never
  spreads a gang across regions unless asked). Node ids interleave the types (n000 p100, n001
  k80, n002 v100, ...) and regions are named in that order (`BLIND_ORDER`), so a
  heterogeneity-blind policy, which breaks ties by node order and domain name, starts on the
  middle type rather than always on the fastest or the slowest.
- **Load**: each trace at its own arrival times and with arrival times divided by 4 and by 8
  (`speedup`), about the first arrival.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from corral.core.model import Node

GPU_TYPES = ("v100", "p100", "k80")
DEFAULT_CLUSTER: Mapping[str, int] = {"v100": 36, "p100": 36, "k80": 36}

Key = tuple[str, int]  # (job type, GPU count)


class GavelFormatError(ValueError):
    """A Gavel trace or throughputs file that cannot be read; the message names file and line."""


@dataclass(frozen=True, slots=True)
class GavelJob:
    name: str
    job_type: str
    command: str
    steps_arg: str
    needs_data_dir: bool
    total_steps: int
    arrival: float
    scale: int  # GPUs


@dataclass(frozen=True)
class Throughputs:
    """Steps/s of (job type, GPU count) alone on each GPU type, measured or derived by the rule
    for unmeasured counts (module docstring)."""

    measured: Mapping[str, Mapping[Key, float]]

    @classmethod
    def load(cls, path: Path) -> Throughputs:
        raw = json.loads(path.read_text())
        measured: dict[str, dict[Key, float]] = {}
        for gpu in GPU_TYPES:
            if gpu not in raw:
                raise GavelFormatError(f"{path}: no throughputs for GPU type {gpu!r}")
            measured[gpu] = {}
            for key, entry in raw[gpu].items():
                job_type, scale = ast.literal_eval(key)
                measured[gpu][(str(job_type), int(scale))] = float(entry["null"])
        return cls(measured)

    def of(self, job_type: str, scale: int, gpu: str) -> float:
        """Steps/s of `job_type` on `scale` GPUs of type `gpu`.

        >>> t = Throughputs({"k80": {("A", 1): 2.0, ("A", 8): 12.0}})
        >>> t.of("A", 8, "k80"), t.of("A", 16, "k80"), t.of("A", 4, "k80")
        (12.0, 24.0, 8.0)
        """
        table = self.measured[gpu]
        if (job_type, scale) in table:
            return table[(job_type, scale)]
        below = [s for (t, s) in table if t == job_type and s < scale]
        if not below:
            raise GavelFormatError(f"no measured throughput of {job_type!r} on {gpu} at or "
                                   f"below {scale} GPUs")
        k = max(below)
        return table[(job_type, k)] * scale / k

    def rates(self, job: GavelJob) -> dict[str, float]:
        return {gpu: self.of(job.job_type, job.scale, gpu) for gpu in self.measured}

    def fastest_s(self, job: GavelJob) -> float:
        """The job's run time alone on its fastest type (the lower bound of its JCT)."""
        return job.total_steps / max(self.rates(job).values())


def load_trace(path: Path) -> list[GavelJob]:
    jobs: list[GavelJob] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            raise GavelFormatError(f"{path}:{n}: expected 7 tab-separated fields (type, command, "
                                   f"steps argument, needs data dir, total steps, arrival, "
                                   f"scale factor), got {len(fields)}")
        job_type, command, steps_arg, data_dir, steps, arrival, scale = fields
        try:
            jobs.append(GavelJob(f"j{n - 1:05d}", job_type, command, steps_arg,
                                 bool(int(data_dir)), int(steps), float(arrival), int(scale)))
        except ValueError as e:
            raise GavelFormatError(f"{path}:{n}: {e}") from None
    jobs.sort(key=lambda j: (j.arrival, j.name))
    return jobs


def at_speedup(jobs: Iterable[GavelJob], speedup: float) -> list[GavelJob]:
    """Arrival times divided by `speedup` about the first arrival (4: four times the load)."""
    jobs = list(jobs)
    if not jobs:
        return jobs
    t0 = min(j.arrival for j in jobs)
    return [replace(j, arrival=t0 + (j.arrival - t0) / speedup) for j in jobs]


def runnable(jobs: Iterable[GavelJob], cluster: Mapping[str, int]) -> tuple[list[GavelJob], int]:
    """The jobs some single GPU type can hold, and how many were left out (too large)."""
    largest = max(cluster.values())
    kept = [j for j in jobs if j.scale <= largest]
    return kept, sum(1 for j in jobs if j.scale > largest)


#: the order node ids and region names give the types: the middle one first, so that a
#: heterogeneity-blind policy's ties (node order, then domain name) favour neither end
BLIND_ORDER = ("p100", "k80", "v100")


def cluster_nodes(cluster: Mapping[str, int]) -> tuple[Node, ...]:
    """One-GPU nodes, ids interleaving the types, each type its own region (module docstring).

    >>> [(n.id, n.gpu_model, n.region) for n in cluster_nodes({"v100": 1, "k80": 2})]
    [('n000', 'k80', 'r1-k80'), ('n001', 'v100', 'r2-v100'), ('n002', 'k80', 'r1-k80')]
    """
    order = [gpu for i in range(max(cluster.values()))
             for gpu in BLIND_ORDER if i < cluster.get(gpu, 0)]
    region = {gpu: f"r{i}-{gpu}" for i, gpu in enumerate(BLIND_ORDER)}
    return tuple(Node(f"n{i:03d}", "gavel", gpu, 1, 16 * 1024, 8000, 64 * 1024,
                      region=region[gpu]) for i, gpu in enumerate(order))


# -- the converted inputs of Gavel's own simulator ------------------------------------------------
_CD = re.compile(r"^cd (\S+) && (.*)$")


def gavel_line(job: GavelJob) -> str:
    """A job in the format Gavel's current `utils.parse_trace` reads (10 fields: type, command,
    working directory, steps argument, needs data dir, total steps, scale factor, priority
    weight, SLO, arrival), priority weight 1 and no SLO (-1)."""
    m = _CD.match(job.command)
    workdir, command = (m.group(1), m.group(2)) if m else ("", job.command)
    return "\t".join([job.job_type, command, workdir, job.steps_arg, str(int(job.needs_data_dir)),
                      str(job.total_steps), str(job.scale), "1", "-1", f"{job.arrival:f}"])


def write_converted(jobs: Iterable[GavelJob], trace_out: Path) -> None:
    trace_out.write_text("".join(gavel_line(j) + "\n" for j in jobs))


def write_throughputs(source: Path, jobs: Iterable[GavelJob], out: Path) -> None:
    """Gavel's throughputs file plus derived entries for every (type, count) the jobs use and
    nobody measured (the rule in `Throughputs.of`), alone ("null") and, for Gavel's space
    sharing, paired with nothing else (no pair entries: packing is off in the policies run)."""
    raw = json.loads(source.read_text())
    t = Throughputs.load(source)
    for j in jobs:
        for gpu in GPU_TYPES:
            key = str((j.job_type, j.scale))
            for variant in (gpu, f"{gpu}_unconsolidated"):
                table = raw.setdefault(variant, {})
                if key not in table:
                    table[key] = {"null": t.of(j.job_type, j.scale, gpu)}
    out.write_text(json.dumps(raw))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear between ranks (numpy's default)."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


_JOB_JCT = re.compile(r"^Job (\d+): ([0-9.]+)$")


def read_gavel_log(path: Path) -> list[float] | None:
    """Per-job JCTs (s) that Gavel's `simulate_scheduler_with_trace.py` printed (its lines
    `Job N: seconds` after `Job completion times:`); None when the run did not finish."""
    if not path.exists():
        return None
    text = path.read_text(errors="replace")
    if "Average job completion time" not in text:
        return None
    jcts: list[float] = []
    for line in text.splitlines():
        m = _JOB_JCT.match(line.strip())
        if m:
            jcts.append(float(m.group(2)))
    return jcts
