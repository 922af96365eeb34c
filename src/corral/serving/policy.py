"""The service autoscaler: how many replicas a service should have now, and why.

    observe(now, in_flight, arrivals, latencies)      once per tick, from the gateway's counters
        │
    decide(now, current, ready)
        │  proposals   one per target, over the stable window (60 s) and the panic window (6 s):
        │              in_flight  ceil(mean in flight / (target x utilisation))      (Knative KPA)
        │                         but a queue counts only as what clears it in 60 s (Little's law)
        │              rps        ceil(arrivals/s / (target x utilisation))
        │              latency    ceil(ready x observed pXX / target)                 (HPA's ratio)
        │                         over latencies since `ready` last changed, the ratio within
        │                         [1/2, 2] per step: a latency spike must not compound
        │              the largest proposal wins (as HPA with several metrics)
        │  panic       the panic window asks for >= 200% of the ready replicas: scale on the panic
        │              window at once and never down, until a stable window passes calm (KPA)
        │  idle        min_replicas 0 and nothing in flight or arriving for scale_to_zero_after_s
        │  tolerance   changes within 10% of the current count are not made (HPA)
        │  stabilise   up to the lowest recommendation of the up window, down to the highest of
        │              the down window (HPA behavior; skipped in panic and for scale to zero)
        │  rate limit  HPA behavior policies (+100% or +4 per 15 s; -100% per 15 s by default)
        │  bounds      min_replicas <= desired <= max_replicas, always
        ▼
    Decision(desired, code, reason: "scaled 2 -> 7: 38 in flight (60 s average), target 8 per
             replica at 70% utilisation")

Pure: time is the `now` argument, nothing is read from a clock, nothing is written anywhere; the
scaler's memory (windows, panic, recent recommendations and changes) lives in the object, so the
control plane keeps one `ServiceScaler` per service and the simulator one per run. Why the order:
panic comes before stabilisation because a burst must not wait for a window to fill; bounds come
last because no rate limit may leave a service below its minimum or above its maximum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from corral.serving.behavior import ScaleHistory
from corral.serving.config import ScalingConfig, Target, TargetKind
from corral.serving.windows import MetricWindows

__all__ = [
    "HELD",
    "LATENCY_STEP",
    "MIN_LATENCY_SAMPLES",
    "SCALED_DOWN",
    "SCALED_TO_ZERO",
    "SCALED_UP",
    "Decision",
    "Proposal",
    "ServiceScaler",
]

#: decision codes: stable strings for events and tests
SCALED_UP = "ScaledUp"
SCALED_DOWN = "ScaledDown"
SCALED_TO_ZERO = "ScaledToZero"
HELD = "Held"

#: a latency percentile over fewer finished requests is noise, not a signal
MIN_LATENCY_SAMPLES = 10
#: the latency ratio moves the replica count by at most this factor (or its inverse) per step
LATENCY_STEP = 2.0


@dataclass(frozen=True)
class Proposal:
    """What one target asks for, from the metric it saw over one window."""

    target: Target
    replicas: int
    observed: float  # in flight (mean), arrivals/s, or the latency percentile in seconds
    window_s: float
    samples: int = 0  # latency: how many requests the percentile is over
    #: in flight, backlog-aware: what lasting load needs (rate x hold + queued x hold / clear),
    #: when it is less than `observed`; the replicas then follow it
    needed: float | None = None
    rate: float = 0.0  # arrivals/s over the window
    hold_s: float = 0.0  # seconds a request holds a slot (stable window)
    queued: float = 0.0  # mean requests waiting at the gateway over the window


@dataclass(frozen=True)
class Decision:
    now: float
    current: int
    desired: int
    code: str
    panic: bool
    reason: str
    governing: Proposal | None  # the proposal the decision followed (None: idle, no targets met)
    recommended: int  # before tolerance, stabilisation, rate limits and bounds


class ServiceScaler:
    """The autoscaler of one service: feed it observations, ask it for a decision each tick."""

    def __init__(self, config: ScalingConfig) -> None:
        self.config = config
        keep = max(config.stable_window_s, config.scale_up.stabilization_s,
                   config.scale_down.stabilization_s,
                   *(lim.period_s for b in (config.scale_up, config.scale_down) for lim in b.limits))
        self.windows = MetricWindows(keep_s=config.stable_window_s)
        self.history = ScaleHistory(keep_s=keep)
        self.panic_until: float | None = None
        self._ready: int | None = None
        self._ready_since: float | None = None  # latencies before it came from another count

    def observe(self, now: float, *, in_flight: float, arrivals: int = 0,
                latencies: Iterable[float] = (), running: float | None = None) -> None:
        """Record one tick: requests in flight now (queued + running), arrivals and every
        finished request's latency (seconds) since the last tick; `running`: how many of those
        in flight run on replicas (enables the backlog-aware in-flight rule)."""
        self.windows.observe(now, in_flight, arrivals, latencies, running)

    def decide(self, now: float, *, current: int, ready: int | None = None) -> Decision:
        """The replicas the service should have at `now`. `current`: replicas asked for (ready or
        starting); `ready`: those serving (default: current). Call once per tick, after
        `observe`. The decision is remembered for the stabilisation windows, and its change
        (current -> desired) for the rate limits, as HPA records its own scale events: the
        caller is expected to apply it (a change it could not make shows as `current` next tick).
        Never raises for a load; deterministic for the same calls."""
        ready = current if ready is None else ready
        if ready != self._ready:  # the first call keeps what was observed before it
            self._ready_since = None if self._ready is None else now
            self._ready = ready
        cfg = self.config
        stable = self._proposals(now, cfg.stable_window_s, ready)
        panic_props = self._proposals(now, cfg.panic_window_s, ready)
        best, best_panic = _largest(stable), _largest(panic_props)
        panic = self._update_panic(now, ready, best_panic)
        governing = best_panic if panic and _count(best_panic) > _count(best) else best
        recommended = _count(governing)
        notes: list[str] = []
        if self._idle(now):
            desired = self._bounded(0, notes)
            code = SCALED_TO_ZERO if desired < current else HELD
            self.history.record(now, desired, current, desired)
            return self._decision(now, current, desired, code, panic, None, 0, notes, idle=True)
        if governing is None:  # no target has a figure yet (latency before any request)
            desired = self._bounded(current, notes)
            self.history.record(now, desired, current, desired)
            code = SCALED_UP if desired > current else SCALED_DOWN if desired < current else HELD
            return self._decision(now, current, desired, code, panic, None, desired, notes)
        if recommended == 0 and current > 0:
            recommended = 1  # load ended but the idle period has not: keep one warm
            notes.append(self._idle_note(now))
        desired = self._limited(now, current, recommended, panic, notes)
        self.history.record(now, recommended, current, desired)
        code = SCALED_UP if desired > current else SCALED_DOWN if desired < current else HELD
        return self._decision(now, current, desired, code, panic, governing, recommended, notes)

    # -- proposals ---------------------------------------------------------------------------

    def _proposals(self, now: float, window_s: float, ready: int) -> list[Proposal]:
        out = []
        for target in self.config.targets:
            p = self._proposal(target, now, window_s, ready)
            if p is not None:
                out.append(p)
        return out

    def _proposal(self, target: Target, now: float, window_s: float,
                  ready: int) -> Proposal | None:
        per_replica = target.value * self.config.target_utilization
        if target.kind is TargetKind.IN_FLIGHT:
            return self._in_flight(target, now, window_s, per_replica)
        if target.kind is TargetKind.RPS:
            seen = self.windows.arrival_rate(now, window_s)
            return Proposal(target, math.ceil(_round(seen / per_replica)), seen, window_s)
        return self._latency(target, now, ready)

    def _latency(self, target: Target, now: float, ready: int) -> Proposal | None:
        """HPA's ratio rule on a latency percentile, made safe to repeat every tick. Latency
        lags: a queue's wait is still in the window after the replicas that end it are ready,
        and `ready x p/target` then multiplies the new count by the old latency, tick after
        tick (on the Azure trace, a 1 s p99 target so reached 58 replicas where 8 carry the
        peak). So only latencies finished since `ready` last changed count (they were served by
        this many replicas), at least MIN_LATENCY_SAMPLES of them, and one step moves the count
        by at most LATENCY_STEP. The stable window serves both modes: a 6 s percentile is
        noise."""
        cfg = self.config
        found = self.windows.latency_percentile(now, cfg.stable_window_s, target.percentile,
                                                since=self._ready_since)
        if found is None or found[1] < MIN_LATENCY_SAMPLES:
            return None
        seen, n = found
        ratio = min(max(seen / target.value, 1 / LATENCY_STEP), LATENCY_STEP)
        since = self._ready_since if self._ready_since is not None else now - cfg.stable_window_s
        return Proposal(target, math.ceil(_round(max(ready, 1) * ratio)), seen,
                        min(cfg.stable_window_s, now - since), n)

    def _in_flight(self, target: Target, now: float, window_s: float,
                   per_replica: float) -> Proposal:
        """KPA's rule, except that a queue waiting for replicas that are still starting is not
        taken for lasting load: without this a 60 s cold start under a burst grows the queue,
        which asks for more replicas, which grows nothing but the bill (the simulator's step
        burst ends with 5x the replicas static-peak has). Little's law gives the lasting load:
        arrivals/s x seconds a request holds a slot (at least what runs now), and the queue is
        cleared within `backlog_clear_s`. Example: 6/s x 5.5 s = 33 (16 run now), 186 queued x
        5.5 s / 60 s = 17 more: 50 in flight needed, not the 202 in flight seen."""
        w, clear = self.windows, self.config.backlog_clear_s
        seen = w.mean_in_flight(now, window_s)
        hold = w.hold_s(now, self.config.stable_window_s)
        queued = w.mean_queued(now, window_s)
        if clear is None or hold is None or queued is None:
            return Proposal(target, math.ceil(_round(seen / per_replica)), seen, window_s)
        rate = w.arrival_rate(now, window_s)
        # never below what runs now: those requests hold their slots whatever arrives next
        needed = max(rate * hold, seen - queued) + queued * hold / clear
        if needed >= seen:
            return Proposal(target, math.ceil(_round(seen / per_replica)), seen, window_s)
        return Proposal(target, math.ceil(_round(needed / per_replica)), seen, window_s,
                        needed=needed, rate=rate, hold_s=hold, queued=queued)

    # -- modes --------------------------------------------------------------------------------

    def _update_panic(self, now: float, ready: int, best_panic: Proposal | None) -> bool:
        threshold = self.config.panic_threshold
        wanted = _count(best_panic)
        if threshold is not None and wanted > 0 and (ready == 0 or wanted / ready >= threshold):
            self.panic_until = now + self.config.stable_window_s
        if self.panic_until is not None and now >= self.panic_until:
            self.panic_until = None
        return self.panic_until is not None

    def _warming(self, now: float) -> bool:
        first = self.windows.first_t
        return first is None or now - first < self.config.stable_window_s

    def _idle(self, now: float) -> bool:
        """Scale to zero: allowed (min 0), observed at all, and quiet long enough, this tick too."""
        cfg, w = self.config, self.windows
        if cfg.min_replicas > 0 or w.first_t is None or w.last_busy_t == now:
            return False
        return w.idle_for(now) >= cfg.scale_to_zero_after_s

    def _idle_note(self, now: float) -> str:
        cfg = self.config
        if cfg.min_replicas > 0:
            return "nothing in flight"
        return (f"idle for {_num(self.windows.idle_for(now))} s, scale to zero after "
                f"{_num(cfg.scale_to_zero_after_s)} s")

    # -- limits -------------------------------------------------------------------------------

    def _limited(self, now: float, current: int, recommended: int, panic: bool,
                 notes: list[str]) -> int:
        cfg = self.config
        desired = recommended
        if current > 0 and desired != current and abs(desired - current) <= cfg.tolerance * current:
            notes.append(f"within the {_num(cfg.tolerance * 100)}% tolerance")
            desired = current
        if panic:
            if desired < current:
                notes.append("no scale-down in panic")
            desired = max(desired, current)
        elif desired < current and self._warming(now):
            # a new scaler has seen less than a stable window: its average is not the load yet
            notes.append(f"no scale-down on less than {_num(cfg.stable_window_s)} s of data")
            desired = current
        else:
            held = self.history.stabilized(now, current, desired, cfg.scale_up, cfg.scale_down)
            if held != desired:
                window = cfg.scale_down if desired < current else cfg.scale_up
                direction = "down" if desired < current else "up"
                notes.append(f"the {_num(window.stabilization_s)} s scale-{direction} window "
                             f"holds {held}")
                desired = held
        desired = self._rate_limited(now, current, desired, notes)
        return self._bounded(desired, notes)

    def _rate_limited(self, now: float, current: int, desired: int, notes: list[str]) -> int:
        cfg = self.config
        if desired > current:
            top = self.history.up_limit(now, current, cfg.scale_up)
            if top is not None and desired > top:
                notes.append(f"scale-up rate limit allows {top}")
                return top
        elif desired < current:
            bottom = self.history.down_limit(now, current, cfg.scale_down)
            if bottom is not None and desired < bottom:
                notes.append(f"scale-down rate limit allows {bottom}")
                return bottom
        return desired

    def _bounded(self, desired: int, notes: list[str]) -> int:
        cfg = self.config
        if desired > cfg.max_replicas:
            notes.append(f"capped at max_replicas {cfg.max_replicas}")
            return cfg.max_replicas
        if desired < cfg.min_replicas:
            notes.append(f"raised to min_replicas {cfg.min_replicas}")
            return cfg.min_replicas
        return desired

    # -- the sentence ---------------------------------------------------------------------------

    def _decision(self, now: float, current: int, desired: int, code: str, panic: bool,
                  governing: Proposal | None, recommended: int, notes: list[str],
                  idle: bool = False) -> Decision:
        head = f"scaled {current} -> {desired}" if desired != current else f"held at {current}"
        if panic:
            head += " (panic)"
        if governing is None:
            why = (f"idle for {_num(self.windows.idle_for(now))} s, scale to zero after "
                   f"{_num(self.config.scale_to_zero_after_s)} s") if idle \
                else "no metric yet"
        else:
            why = self._because(governing)
            if recommended != desired:
                why += f"; asks for {recommended}"
        reason = f"{head}: {why}" + "".join(f"; {n}" for n in notes)
        return Decision(now, current, desired, code, panic, reason, governing, recommended)

    def _because(self, p: Proposal) -> str:
        util = self.config.target_utilization
        at = "" if util == 1 else f" at {_num(util * 100)}% utilisation"
        label = "panic average" if p.window_s < self.config.stable_window_s else "average"
        if p.target.kind is TargetKind.IN_FLIGHT and p.needed is not None:
            running = p.observed - p.queued
            lasting = (f"{_num(p.rate)}/s x {_num(p.hold_s)} s held"
                       if p.rate * p.hold_s >= running else f"{_num(running)} running")
            return (f"{_num(p.observed)} in flight ({_num(p.window_s)} s {label}) but "
                    f"{_num(p.needed)} needed ({lasting} + {_num(p.queued)} queued cleared in "
                    f"{_num(self.config.backlog_clear_s or 0)} s), target "
                    f"{_num(p.target.value)} per replica{at}")
        if p.target.kind is TargetKind.IN_FLIGHT:
            return (f"{_num(p.observed)} in flight ({_num(p.window_s)} s {label}), "
                    f"target {_num(p.target.value)} per replica{at}")
        if p.target.kind is TargetKind.RPS:
            return (f"{_num(p.observed)} requests/s ({_num(p.window_s)} s {label}), "
                    f"target {_num(p.target.value)} per replica{at}")
        capped = not 1 / LATENCY_STEP <= p.observed / p.target.value <= LATENCY_STEP
        return (f"p{p.target.percentile} latency {_num(p.observed)} s over {p.samples} requests "
                f"(last {_num(p.window_s)} s), target {_num(p.target.value)} s"
                + (f", x{_num(LATENCY_STEP)} at most per step" if capped else ""))


def _largest(proposals: list[Proposal]) -> Proposal | None:
    return max(proposals, key=lambda p: p.replicas, default=None)


def _count(p: Proposal | None) -> int:
    return 0 if p is None else p.replicas


def _round(x: float) -> float:
    """Round away float noise before a ceil: 16.8 / 5.6 is 3.0000000000000004, not above 3."""
    return round(x, 9)


def _num(x: float) -> str:
    """A figure as a reason quotes it: at most one decimal, no trailing zero (38, 37.6, 0.2)."""
    return f"{round(x, 1):g}"
