"""Request arrivals of an inference service: the Azure LLM inference trace 2023 (Splitwise).

`AzureLLMInferenceTrace_conv.csv` (Patel et al., "Splitwise", ISCA 2024; CC BY 4.0): one row per
request, `TIMESTAMP` (arrival, to 0.1 us), `ContextTokens` (prompt), `GeneratedTokens` (output).
19,366 requests over one hour. Arrivals become seconds from the first one; a window keeps the
requests that arrive in [start_s, start_s + duration_s) and shifts them to start at 0.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from corral.sim.trace import TraceFormatError

__all__ = ["COLUMNS", "STEP_BURST", "Requests", "load_requests", "synthetic_requests"]

#: (until s, requests/s): 2/s for 10 min, a step to 6/s for 5 min, 2/s for 10 min
STEP_BURST = ((600.0, 2.0), (900.0, 6.0), (1500.0, 2.0))

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True)
class Requests:
    """Arrival times (s, sorted) and token counts, one entry per request."""

    name: str
    arrival_s: npt.NDArray[np.float64]
    prompt_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    def window(self, start_s: float, duration_s: float | None) -> Requests:
        end = np.inf if duration_s is None else start_s + duration_s
        keep = (self.arrival_s >= start_s) & (self.arrival_s < end)
        if not keep.any():
            raise ValueError(f"window [{start_s:g}, {end:g}) s holds no request; the trace spans "
                             f"0 to {self.span_s:.0f} s")
        return Requests(f"{self.name}[{start_s:g}s+{duration_s or self.span_s - start_s:g}s]",
                        self.arrival_s[keep] - start_s, self.prompt_tokens[keep],
                        self.output_tokens[keep])


def load_requests(path: Path) -> Requests:
    """Read the Azure LLM inference trace CSV; errors name the file, the line and the column."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise TraceFormatError(f"{path.name}: lacks column(s) {', '.join(missing)}; found "
                                   f"{', '.join(header) or 'no header'}")
        idx = [header.index(c) for c in COLUMNS]
        stamps, prompts, outputs = [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                stamps.append(np.datetime64(row[idx[0]].strip()[:26], "us"))
                prompts.append(int(row[idx[1]]))
                outputs.append(int(row[idx[2]]))
            except (ValueError, IndexError):
                raise TraceFormatError(f"{path.name}, line {line}: expected a timestamp and two "
                                       f"token counts, got {row!r}") from None
    if not stamps:
        raise TraceFormatError(f"{path.name}: no requests")
    t = np.array(stamps)
    arrival = (t - t.min()) / np.timedelta64(1, "us") / 1e6
    order = np.argsort(arrival, kind="stable")
    return Requests(path.stem, arrival[order].astype(np.float64),
                    np.array(prompts, dtype=np.int64)[order],
                    np.array(outputs, dtype=np.int64)[order])


def synthetic_requests(seed: int, phases: tuple[tuple[float, float], ...] = STEP_BURST) -> Requests:
    """Seeded Poisson arrivals at a piecewise-constant rate, with token counts drawn lognormal
    around the Azure conversation trace's medians (prompt ~1,000, output ~150 tokens). The
    default is a 3x step: the burst a reactive autoscaler with a cold start meets worst."""
    rng = np.random.default_rng(seed)
    arrivals: list[float] = []
    t = 0.0
    for until, rate in phases:
        while True:
            t += float(rng.exponential(1 / rate))
            if t >= until:
                t = until
                break
            arrivals.append(t)
    n = len(arrivals)
    prompts = np.clip(rng.lognormal(6.6, 0.7, n), 16, 8000).astype(np.int64)
    outputs = np.clip(rng.lognormal(5.0, 0.8, n), 4, 1000).astype(np.int64)
    return Requests(f"synthetic-step(seed {seed})", np.array(arrivals, dtype=np.float64),
                    prompts, outputs)
