"""The progress contract: how a worker tells corral how fast it trains, and what corral keeps.

**Contract (worker side).** A worker may write its progress to the file named by
`CORRAL_PROGRESS_FILE` (`PROGRESS_ENV`), a JSON object replaced atomically (write a temporary
file in the same directory, then rename it over the old one, so a reader never sees half):

    {"steps": 1200, "total_steps": 50000, "steps_per_s": 3.1}

`steps`: steps done so far (integer >= 0); `steps_per_s`: its recent training throughput
(> 0, finite), measured by the worker over its last few hundred steps, excluding start-up;
`total_steps` (optional, integer >= 1): the steps the whole run will take, so corral can say
how far along it is. Anything else in the object is ignored; a file that does not parse is ignored (the worker may be
mid-write on a filesystem without atomic rename), never an error for the workload.

**What corral keeps.** `ThroughputEstimates`: per (job kind, accelerator model), an
exponentially weighted mean of the reported steps/s (`alpha` 0.3: the newest report of a job
weighs most, one odd run does not erase the history). A later job of the same kind that states
no throughput of its own may be given `throughput_of(kind)` as its `Workload.throughput`: the
relative rates the core's `throughput` plugin places by.

Where it is wired: the local backend and `corral agent` give each worker
`<attempt dir>/progress-<i>/progress.json` (`progress_path`; the folder is the worker's, for its
temporary file) and read it back on each poll; the Ray backend's node hosts do the same on
their nodes (`<node root>/<workload>/<attempt>-<launch>/progress-<i>/progress.json`, read back
through the host, `RayBackend.progress`); the Kubernetes and Slurm backends set it to ""
(their workers' files are on other machines). Nothing here touches hardware.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PROGRESS_ENV: Final = "CORRAL_PROGRESS_FILE"
PROGRESS_NAME: Final = "progress.json"
_MAX_BYTES: Final = 64 * 1024  # a progress file is a few dozen bytes; a huge one is not read


@dataclass(frozen=True, slots=True)
class Progress:
    steps: int
    steps_per_s: float
    total_steps: int | None = None

    def as_record(self) -> dict[str, float | int | None]:
        return {"steps": self.steps, "steps_per_s": self.steps_per_s,
                "total_steps": self.total_steps}


def progress_path(attempt_dir: Path, worker: int) -> Path:
    """Where worker `worker` of an attempt writes its progress (local backend and agents)."""
    return attempt_dir / f"progress-{worker}" / PROGRESS_NAME


def read_progress_file(path: Path) -> Progress | None:
    """The progress in `path`, None when it is missing, too big or does not follow the
    contract (never raises: a worker's file is the worker's business)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_BYTES:
        return None
    return read_progress(data.decode("utf-8", errors="replace"))


def read_progress(text: str) -> Progress | None:
    """The progress in a file's text, or None when it does not follow the contract.

    >>> read_progress('{"steps": 1200, "steps_per_s": 3.1, "loss": 0.2}')
    Progress(steps=1200, steps_per_s=3.1, total_steps=None)
    >>> read_progress('{"steps": 12'), read_progress('{"steps": 1, "steps_per_s": 0}')
    (None, None)
    """
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    steps, rate = data.get("steps"), data.get("steps_per_s")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        return None
    if not math.isfinite(rate) or rate <= 0:
        return None
    total = data.get("total_steps")
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        total = None  # optional: a bad total does not spoil the rest
    return Progress(steps, float(rate), total)


@dataclass
class ThroughputEstimates:
    """Per (job kind, model) steps/s, an exponentially weighted mean of what workers reported."""

    alpha: float = 0.3
    rates: dict[tuple[str, str], float] = field(default_factory=dict)

    def report(self, kind: str, model: str, steps_per_s: float) -> float:
        """Fold one report in; returns the new estimate."""
        key = (kind, model)
        old = self.rates.get(key)
        new = steps_per_s if old is None else old + self.alpha * (steps_per_s - old)
        self.rates[key] = new
        return new

    def throughput_of(self, kind: str) -> tuple[tuple[str, float], ...]:
        """The `Workload.throughput` a job of `kind` may be given: every model measured for it,
        sorted by model; () when none is.

        >>> e = ThroughputEstimates()
        >>> e.report("resnet50-b64", "V100", 10.0), e.report("resnet50-b64", "V100", 20.0)
        (10.0, 13.0)
        >>> e.report("resnet50-b64", "K80", 2.0)
        2.0
        >>> e.throughput_of("resnet50-b64"), e.throughput_of("bert")
        ((('K80', 2.0), ('V100', 13.0)), ())
        """
        return tuple(sorted((m, r) for (k, m), r in self.rates.items() if k == kind))
