"""The progress contract: how a worker tells corral how fast it trains, and what corral keeps.

**Contract (worker side).** A worker may write its progress to the file named by
`CORRAL_PROGRESS_FILE` (`PROGRESS_ENV`), a JSON object replaced atomically (write a temporary
file in the same directory, then rename it over the old one, so a reader never sees half):

    {"steps": 1200, "steps_per_s": 3.1}

`steps`: steps done so far (integer >= 0); `steps_per_s`: its recent training throughput
(> 0, finite), measured by the worker over its last few hundred steps, excluding start-up.
Anything else in the object is ignored; a file that does not parse is ignored (the worker may be
mid-write on a filesystem without atomic rename), never an error for the workload.

**What corral keeps.** `ThroughputEstimates`: per (job kind, accelerator model), an
exponentially weighted mean of the reported steps/s (`alpha` 0.3: the newest report of a job
weighs most, one odd run does not erase the history). A later job of the same kind that states
no throughput of its own may be given `throughput_of(kind)` as its `Workload.throughput`: the
relative rates the core's `throughput` plugin places by.

Not yet wired: the backends do not yet set `CORRAL_PROGRESS_FILE` nor read it, and the
estimates are not yet persisted (issue 17 lists both as missing). Nothing here touches hardware.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Final

PROGRESS_ENV: Final = "CORRAL_PROGRESS_FILE"


@dataclass(frozen=True, slots=True)
class Progress:
    steps: int
    steps_per_s: float


def read_progress(text: str) -> Progress | None:
    """The progress in a file's text, or None when it does not follow the contract.

    >>> read_progress('{"steps": 1200, "steps_per_s": 3.1, "loss": 0.2}')
    Progress(steps=1200, steps_per_s=3.1)
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
    return Progress(steps, float(rate))


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
