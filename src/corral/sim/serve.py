"""`corral simulate serve`: an inference service replayed on a simulated clock.

    Requests (serve_trace.py) ──> gateway: FIFO queue while every ready replica is full
                                     │  dispatch to the ready replica with the fewest running
                                     ▼
    replicas: starting (cold start) ─> ready (<= max_batch at once) ─> draining ─> gone
                                     ▲          service time: serve_model.py
    scaler: static count, or corral.serving.ServiceScaler called every tick with the gateway's
            counters (in flight = queued + running, arrivals, time to first token of finished
            requests) and its decision applied at once (launch, cancel, drain)

Policies compared (`POLICIES`):
- `static-peak`: enough replicas that no request ever waits: ceil(most requests in flight at once
  with unlimited replicas / max_batch). Billed for the whole run.
- `static-mean`: ceil(mean requests in flight with unlimited replicas / max_batch).
- `static-best`: the fewest static replicas that meet the SLO on this very trace, found by search:
  an oracle no operator has in advance, shown as the bar an autoscaler must beat.
- `hpa`: reactive target tracking as Kubernetes' HPA does it: one decision every 15 s on the
  in-flight target averaged over 60 s (a Prometheus rate[1m]), no panic mode, scale-up at most
  +100% or +4 per 15 s, scale-down stabilised over 300 s.
- `kpa`: Knative's KPA as configured by default: a 2 s tick, 60 s stable and 6 s panic windows,
  panic at 200%, no scale-down window beyond the 60 s average, scale-up at most 1000x and
  scale-down at most /2 per tick (max-scale-up-rate, max-scale-down-rate).
- `corral`: `corral.serving` with its defaults: KPA's windows and panic, scale-down stabilised
  over 120 s, HPA's rate limits, and the backlog-aware in-flight rule (a queue behind starting
  replicas counts as what clears it in 60 s, not as lasting load).
Both autoscalers track the same target (in flight per replica = max_batch, at `target_utilization`)
and start with the static-mean count warm: the trace is one hour of a service already running.

The SLO: a request meets it when its time to first token (gateway wait, cold-start wait
included, plus its prefill) is at most `slo_ttft_s` (2 s). Decode time is not in it: with a
per-sequence decode rate that does not depend on load it is the same under every policy.
Replica-hours run from a replica's launch (its cold start is paid) to its end; a static
policy's replicas run the whole run. Deterministic: no random number is drawn (ties break on
replica ids); `seed` names the run for the report.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from corral.serving import ScalingConfig, ServiceScaler, Target, TargetKind
from corral.serving.config import Behavior, RateLimit
from corral.serving.policy import Decision
from corral.sim.serve_model import GpuProfile
from corral.sim.serve_trace import Requests

__all__ = ["POLICIES", "Scaler", "ServeOptions", "ServeResult", "compare_serving",
           "hindsight_hours", "in_flight_unlimited", "run_serve", "simulate_ttft"]

POLICIES = ("static-peak", "static-mean", "static-best", "hpa", "kpa", "corral")

_ARRIVE, _FINISH, _READY, _TICK = 0, 1, 2, 3  # same-time order: arrivals see the state before


class Scaler(Protocol):
    """What the simulator calls each tick: `corral.serving.ServiceScaler`, or a scripted count
    (`serve_foresight.Scripted`) for schedules known in advance."""

    def observe(self, now: float, *, in_flight: float, arrivals: int = 0,
                latencies: Iterable[float] = (), running: float | None = None) -> None: ...

    def decide(self, now: float, *, current: int, ready: int | None = None) -> Decision: ...


@dataclass(frozen=True)
class ServeOptions:
    profile: GpuProfile
    slo_ttft_s: float = 2.0
    slo_target: float = 0.99  # share of requests within the SLO the policies must reach
    max_replicas: int = 64
    #: both autoscalers aim at this share of max_batch in flight per replica (a 2 s TTFT budget
    #: tolerates short queues, so the evidence runs at 0.8; the serving package's default, 0.7,
    #: is Knative's; docs/simulator.md shows the sweep)
    target_utilization: float = 0.8
    #: requests arriving before this are served but not counted, nor replica time before it:
    #: the trace starts with nothing in flight, which a running service never has
    warmup_s: float = 300.0
    #: corral only: also a p99 target on time to first token (s), the larger proposal winning
    latency_target_s: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class ServeResult:
    policy: str
    requests: int
    within_slo: float  # share of requests with TTFT <= the SLO
    ttft_p50_s: float
    ttft_p99_s: float
    latency_p99_s: float
    replica_hours: float
    cost: float
    cold_starts: int
    max_replicas: int
    mean_replicas: float
    decisions: tuple[tuple[float, int, str], ...] = ()  # (time, desired, reason) when it changed

    def report(self, peak_hours: float) -> dict[str, Any]:
        return {"policy": self.policy, "requests": self.requests,
                "within_slo_pct": round(100 * self.within_slo, 3),
                "ttft_p50_s": round(self.ttft_p50_s, 3), "ttft_p99_s": round(self.ttft_p99_s, 3),
                "latency_p99_s": round(self.latency_p99_s, 2),
                "replica_hours": round(self.replica_hours, 3),
                "of_peak_pct": round(100 * self.replica_hours / peak_hours, 1),
                "cost": round(self.cost, 2), "cold_starts": self.cold_starts,
                "max_replicas": self.max_replicas, "mean_replicas": round(self.mean_replicas, 2)}


def in_flight_unlimited(arrival_s: npt.NDArray[np.float64],
                        service_s: npt.NDArray[np.float64]) -> tuple[float, int]:
    """Mean (time-weighted) and most requests in flight if every request started on arrival."""
    times = np.concatenate([arrival_s, arrival_s + service_s])
    steps = np.concatenate([np.ones(len(arrival_s)), -np.ones(len(arrival_s))])
    order = np.lexsort((steps, times))  # at a tie a departure comes first
    level = np.cumsum(steps[order])
    t = times[order]
    mean = float((level[:-1] * np.diff(t)).sum() / (t[-1] - t[0])) if len(t) > 1 else 0.0
    return mean, int(level.max())


def hindsight_hours(arrival_s: npt.NDArray[np.float64], service_s: npt.NDArray[np.float64],
                    max_batch: int, window_s: float, start_s: float = 0.0) -> float:
    """Replica-hours of an oracle that knows every request in advance and resizes at once, with
    no cold start, at the start of each window to ceil(most in flight in it / max_batch), with
    unlimited-replica load (no request ever waits). No reactive policy can hold fewer replicas
    for no wait at all; one that lets requests wait within the SLO can. Counted from start_s."""
    times = np.concatenate([arrival_s, arrival_s + service_s])
    steps = np.concatenate([np.ones(len(arrival_s)), -np.ones(len(arrival_s))])
    order = np.lexsort((steps, times))
    t, level = times[order], np.cumsum(steps[order])
    edges = np.arange(start_s, t[-1] + window_s, window_s)
    # the level entering each window, then every change inside it
    before = np.searchsorted(t, edges[:-1], side="right") - 1
    peak = np.where(before >= 0, level[np.maximum(before, 0)], 0.0)
    inside = (t >= start_s) & (t < edges[-1])
    np.maximum.at(peak, ((t[inside] - start_s) // window_s).astype(int), level[inside])
    widths = np.minimum(edges[1:], t[-1]) - edges[:-1]
    return float((np.ceil(peak / max_batch) * np.clip(widths, 0, None)).sum() / 3600)


@dataclass
class _Replica:
    id: int
    launched: float
    ready: bool = False
    draining: bool = False
    cold: bool = False
    running: int = 0
    ended: float | None = None


@dataclass
class _Run:
    """The mutable state of one run: replicas, the gateway queue and the event heap."""

    req: Requests
    prefill: npt.NDArray[np.float64]
    service: npt.NDArray[np.float64]
    profile: GpuProfile
    events: list[tuple[float, int, int, int]] = field(default_factory=list)
    replicas: dict[int, _Replica] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)
    ttft: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    done_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    running: int = 0
    arrivals_since: int = 0
    finished_since: list[float] = field(default_factory=list)
    next_id: int = 0
    seq: int = 0

    def push(self, t: float, kind: int, payload: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, payload))

    def launch(self, now: float, warm: bool) -> None:
        r = _Replica(self.next_id, launched=now, ready=warm, cold=not warm)
        self.replicas[r.id] = r
        self.next_id += 1
        if not warm:
            self.push(now + self.profile.cold_start_s, _READY, r.id)

    def serving(self) -> list[_Replica]:
        return [r for r in self.replicas.values() if r.ended is None and not r.draining]

    def dispatch(self, now: float) -> None:
        while self.queue:
            free = [r for r in self.serving() if r.ready and r.running < self.profile.max_batch]
            if not free:
                return
            r = min(free, key=lambda x: (x.running, x.id))
            i = self.queue.popleft()
            r.running += 1
            self.running += 1
            self.ttft[i] = now - self.req.arrival_s[i] + self.prefill[i]
            self.push(float(now + self.service[i]), _FINISH, i * 1_000_000 + r.id)

    def resize(self, now: float, desired: int) -> None:
        live = self.serving()
        for _ in range(desired - len(live)):
            self.launch(now, warm=False)
        surplus = len(live) - desired
        # cheapest to give up first: replicas still starting, then idle ones, then the least busy
        for r in sorted(live, key=lambda x: (x.ready, x.running, -x.id))[:max(surplus, 0)]:
            if r.running == 0:
                r.ended = now
            else:
                r.draining = True


def _simulate(req: Requests, opts: ServeOptions, initial: int,
              scaler: Scaler | None, tick_s: float) -> ServeResult:
    return simulate_ttft(req, opts, initial, scaler, tick_s)[0]


def simulate_ttft(req: Requests, opts: ServeOptions, initial: int, scaler: Scaler | None,
                  tick_s: float) -> tuple[ServeResult, npt.NDArray[np.float64]]:
    """One run from `initial` warm replicas; also each request's time to first token (s)."""
    prof = opts.profile
    run = _Run(req, prof.prefill_s(req.prompt_tokens), prof.service_s(req.prompt_tokens,
               req.output_tokens), prof)
    n = len(req)
    run.ttft, run.done_at = np.full(n, np.inf), np.full(n, np.inf)
    for _ in range(initial):
        run.launch(0.0, warm=True)
    for i, t in enumerate(req.arrival_s):
        run.push(float(t), _ARRIVE, i)
    if scaler is not None:
        run.push(tick_s, _TICK, 0)
    decisions: list[tuple[float, int, str]] = []
    samples: list[tuple[float, int]] = [(0.0, initial)]
    finished, now = 0, 0.0
    while run.events and finished < n:
        now, kind, _, payload = heapq.heappop(run.events)
        if kind == _ARRIVE:
            run.queue.append(payload)
            run.arrivals_since += 1
            run.dispatch(now)
        elif kind == _FINISH:
            i, rid = divmod(payload, 1_000_000)
            finished += 1
            _finish(run, now, i, rid)
        elif kind == _READY:
            r = run.replicas[payload]
            if r.ended is None:
                r.ready = True
                run.dispatch(now)
        elif scaler is not None:
            _tick(run, scaler, now, decisions)
            samples.append((now, len(run.serving())))
            run.push(now + tick_s, _TICK, 0)
    return _result(run, opts, now, decisions, samples, ""), run.ttft


def _finish(run: _Run, now: float, i: int, rid: int) -> None:
    r = run.replicas[rid]
    r.running -= 1
    run.running -= 1
    run.done_at[i] = now
    run.finished_since.append(float(run.ttft[i]))
    if r.draining and r.running == 0:
        r.ended = now
    run.dispatch(now)


def _tick(run: _Run, scaler: Scaler, now: float,
          decisions: list[tuple[float, int, str]]) -> None:
    scaler.observe(now, in_flight=len(run.queue) + run.running, arrivals=run.arrivals_since,
                   latencies=run.finished_since, running=run.running)
    run.arrivals_since, run.finished_since = 0, []
    live = run.serving()
    d = scaler.decide(now, current=len(live), ready=sum(r.ready for r in live))
    if d.desired != len(live):
        decisions.append((now, d.desired, d.reason))
        run.resize(now, d.desired)
        run.dispatch(now)


def _result(run: _Run, opts: ServeOptions, end: float, decisions: list[tuple[float, int, str]],
            samples: list[tuple[float, int]], policy: str) -> ServeResult:
    start = min(opts.warmup_s, float(run.req.arrival_s[-1]))
    hours = sum(max(0.0, (r.ended if r.ended is not None else end) - max(r.launched, start))
                for r in run.replicas.values()) / 3600
    cold = sum(r.cold and r.launched >= start for r in run.replicas.values())
    counted = run.req.arrival_s >= start
    ttft, latency = run.ttft[counted], (run.done_at - run.req.arrival_s)[counted]
    counts = np.array([c for t, c in samples if t >= start] + [len(run.serving())])
    hours = float(hours)
    return ServeResult(policy, int(counted.sum()), float(np.mean(ttft <= opts.slo_ttft_s)),
                       float(np.percentile(ttft, 50)), float(np.percentile(ttft, 99)),
                       float(np.percentile(latency, 99)), hours, hours * opts.profile.price_per_hour,
                       cold, int(counts.max()), hours * 3600 / (end - start) if end > start else 0.0,
                       tuple(decisions))


def corral_config(opts: ServeOptions) -> ScalingConfig:
    """corral's policy: the serving package's defaults on the in-flight target."""
    targets: tuple[Target, ...] = (Target(kind=TargetKind.IN_FLIGHT, value=opts.profile.max_batch),)
    if opts.latency_target_s is not None:
        targets += (Target(kind=TargetKind.LATENCY, value=opts.latency_target_s, percentile=99),)
    return ScalingConfig(targets=targets,
                         min_replicas=1, max_replicas=opts.max_replicas,
                         target_utilization=opts.target_utilization)


def hpa_config(opts: ServeOptions) -> ScalingConfig:
    """Kubernetes HPA's defaults on the same target: no panic, 300 s down window."""
    return ScalingConfig(
        targets=(Target(kind=TargetKind.IN_FLIGHT, value=opts.profile.max_batch),),
        min_replicas=1, max_replicas=opts.max_replicas,
        target_utilization=opts.target_utilization, panic_threshold=None, backlog_clear_s=None,
        scale_down=Behavior(stabilization_s=300.0,
                            limits=(RateLimit(type="percent", value=100, period_s=15),)))


def kpa_config(opts: ServeOptions) -> ScalingConfig:
    """Knative KPA's defaults on the same target: panic, no down window, no backlog rule."""
    return ScalingConfig(
        targets=(Target(kind=TargetKind.IN_FLIGHT, value=opts.profile.max_batch),),
        min_replicas=1, max_replicas=opts.max_replicas,
        target_utilization=opts.target_utilization, backlog_clear_s=None, tolerance=0.0,
        scale_up=Behavior(limits=(RateLimit(type="percent", value=99_900, period_s=2),)),
        scale_down=Behavior(limits=(RateLimit(type="percent", value=50, period_s=2),)))


def run_serve(req: Requests, policy: str, opts: ServeOptions) -> ServeResult:
    """One policy over the requests. Static counts come from the unlimited-replica load."""
    prof = opts.profile
    mean, peak = in_flight_unlimited(req.arrival_s, prof.service_s(req.prompt_tokens,
                                                                  req.output_tokens))
    mean_count = max(1, math.ceil(mean / prof.max_batch))
    result: ServeResult
    if policy == "static-peak":
        result = _simulate(req, opts, max(1, math.ceil(peak / prof.max_batch)), None, 0)
    elif policy == "static-mean":
        result = _simulate(req, opts, mean_count, None, 0)
    elif policy == "static-best":
        result = _static_best(req, opts, mean_count, math.ceil(peak / prof.max_batch))
    elif policy == "hpa":
        result = _simulate(req, opts, mean_count, ServiceScaler(hpa_config(opts)), 15.0)
    elif policy == "kpa":
        result = _simulate(req, opts, mean_count, ServiceScaler(kpa_config(opts)), 2.0)
    elif policy == "corral":
        result = _simulate(req, opts, mean_count, ServiceScaler(corral_config(opts)), 2.0)
    else:
        raise ValueError(f"policy: one of {', '.join(POLICIES)}, got {policy!r}")
    return _named(result, policy)


def _static_best(req: Requests, opts: ServeOptions, lo: int, hi: int) -> ServeResult:
    """Bisection on the static count: SLO attainment only grows with replicas."""
    best = _simulate(req, opts, max(hi, 1), None, 0)
    while lo < hi:
        mid = (lo + hi) // 2
        trial = _simulate(req, opts, mid, None, 0)
        if trial.within_slo >= opts.slo_target:
            best, hi = trial, mid
        else:
            lo = mid + 1
    return best


def _named(r: ServeResult, policy: str) -> ServeResult:
    return ServeResult(policy, *[getattr(r, f) for f in (
        "requests", "within_slo", "ttft_p50_s", "ttft_p99_s", "latency_p99_s", "replica_hours",
        "cost", "cold_starts", "max_replicas", "mean_replicas", "decisions")])


def compare_serving(req: Requests, opts: ServeOptions, policies: tuple[str, ...] = POLICIES,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Every policy on the same requests; each row also says its replica-hours against peak's.
    Beside them: the old hindsight oracle (no wait, no slack, free starts: not a bound) and the
    lower bound for the target (`serve_bound`, its linear relaxation: seconds of CPU)."""
    from corral.sim.serve_bound import slo_bound  # scipy's solver, loaded only here

    results = {}
    for k, name in enumerate(policies):
        results[name] = run_serve(req, name, opts)
        if progress is not None:
            progress(k + 1, len(policies))
    peak = results.get("static-peak") or run_serve(req, "static-peak", opts)
    service = opts.profile.service_s(req.prompt_tokens, req.output_tokens)
    start = min(opts.warmup_s, req.span_s)
    bound = {f"{w:g}s": round(100 * hindsight_hours(req.arrival_s, service, opts.profile.max_batch,
                                                   w, start) / peak.replica_hours, 1)
             for w in (10.0, 60.0)}
    # the true lower bound for the target as stated (waits, slack and cold starts counted)
    least = slo_bound(req.arrival_s, opts.profile.prefill_s(req.prompt_tokens), service,
                      max_batch=opts.profile.max_batch, slo_s=opts.slo_ttft_s,
                      slo_target=opts.slo_target, cold_start_s=opts.profile.cold_start_s,
                      start_s=start, whole_replicas=False)
    return {"trace": req.name, "requests": len(req), "profile": opts.profile.name,
            "slo_ttft_s": opts.slo_ttft_s, "slo_target_pct": 100 * opts.slo_target,
            "seed": opts.seed, "peak_replica_hours": round(peak.replica_hours, 3),
            "runs": [r.report(peak.replica_hours) for r in results.values()],
            "hindsight_of_peak_pct": bound,
            "slo_bound_of_peak_pct": round(100 * least.replica_hours / peak.replica_hours, 1),
            "decisions": {k: [list(d) for d in r.decisions[:200]] for k, r in results.items()}}
