"""The service autoscaler, case by case: each case is a load script and the decision it must end
with (desired replicas, code, panic, and words of the reason)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from corral.serving import (
    HELD,
    SCALED_DOWN,
    SCALED_TO_ZERO,
    SCALED_UP,
    Behavior,
    Decision,
    RateLimit,
    ScalingConfig,
    ServiceScaler,
    Target,
    TargetKind,
)

FREE = Behavior()  # no stabilisation, no rate limit


def config(**kw: Any) -> ScalingConfig:
    base: dict[str, Any] = {"targets": (Target(kind=TargetKind.IN_FLIGHT, value=8),),
                            "target_utilization": 1.0, "min_replicas": 1, "max_replicas": 50,
                            "panic_threshold": None, "scale_up": FREE, "scale_down": FREE}
    return ScalingConfig(**(base | kw))


@dataclass
class Script:
    """Ticks every `step` seconds: (until_t, in_flight, arrivals per tick, latencies per tick)."""

    phases: list[tuple[float, float, int, tuple[float, ...]]]
    current: int
    ready: int | None = None
    step: float = 2.0
    follow: bool = False  # apply each decision to `current` (as a control loop would)
    decisions: list[Decision] = field(default_factory=list)

    def run(self, scaler: ServiceScaler) -> Decision:
        t, cur = 0.0, self.current
        for until, in_flight, arrivals, lat in self.phases:
            while t <= until:
                scaler.observe(t, in_flight=in_flight, arrivals=arrivals, latencies=lat)
                d = scaler.decide(t, current=cur, ready=self.ready)
                self.decisions.append(d)
                if self.follow:
                    cur = d.desired
                t += self.step
        return self.decisions[-1]


CASES = [
    # id, config, script, desired, code, panic, words in the reason
    ("in-flight-up", config(), Script([(60, 38, 3, ())], current=2), 5, SCALED_UP, False,
     ["scaled 2 -> 5: 38 in flight (60 s average), target 8 per replica"]),
    ("utilisation-headroom", config(target_utilization=0.5), Script([(60, 32, 3, ())], current=2),
     8, SCALED_UP, False, ["32 in flight", "target 8 per replica at 50% utilisation"]),
    ("in-flight-hold", config(), Script([(60, 16, 3, ())], current=2), 2, HELD, False,
     ["held at 2: 16 in flight"]),
    ("rps-up", config(targets=(Target(kind=TargetKind.RPS, value=5),)), Script([(60, 1, 40, ())], current=1),
     4, SCALED_UP, False, ["scaled 1 -> 4: 20 requests/s (60 s average), target 5 per replica"]),
    ("latency-up", config(targets=(Target(kind=TargetKind.LATENCY, value=2, percentile=95),)),
     Script([(60, 1, 1, (4.0,))], current=3), 6, SCALED_UP, False,
     ["p95 latency 4 s over 30 requests", "target 2 s"]),
    ("largest-target-wins", config(targets=(Target(kind=TargetKind.IN_FLIGHT, value=8),
                                            Target(kind=TargetKind.RPS, value=1))),
     Script([(60, 8, 6, ())], current=1), 3, SCALED_UP, False, ["3 requests/s"]),
    ("panic-on-burst", config(panic_threshold=2.0),
     Script([(60, 16, 1, ()), (66, 64, 1, ())], current=2), 8, SCALED_UP, True,
     ["scaled 2 -> 8 (panic): 64 in flight (6 s panic average)"]),
    ("no-scale-down-in-panic", config(panic_threshold=2.0),
     Script([(60, 16, 1, ()), (64, 64, 1, ()), (80, 0, 0, ())], current=8, ready=2), 8, HELD,
     True, ["no scale-down in panic"]),
    ("panic-ends-after-calm-stable-window", config(panic_threshold=2.0),
     Script([(60, 16, 1, ()), (64, 64, 1, ()), (200, 8, 1, ())], current=8, ready=8), 1,
     SCALED_DOWN, False, ["scaled 8 -> 1: 8 in flight (60 s average)"]),
    ("down-window-holds", config(scale_down=Behavior(stabilization_s=120)),
     Script([(60, 40, 1, ()), (160, 8, 1, ())], current=5, follow=True), 5, HELD, False,
     ["asks for 1", "the 120 s scale-down window holds 5"]),
    ("down-window-passes", config(scale_down=Behavior(stabilization_s=120)),
     Script([(60, 40, 1, ()), (300, 8, 1, ())], current=5, follow=True), 1, HELD, False,
     ["held at 1: 8 in flight"]),
    ("up-rate-limit", config(scale_up=Behavior(limits=(RateLimit(type="pods", value=1,
                                                                 period_s=15),))),
     Script([(60, 80, 1, ())], current=2, follow=True), 6, HELD, False,
     ["asks for 10", "scale-up rate limit allows 6"]),
    ("up-rate-limit-counts-earlier-steps", config(scale_up=Behavior(limits=(
        RateLimit(type="percent", value=100, period_s=15),))),
     Script([(60, 80, 1, ())], current=2, follow=True), 10, HELD, False, ["held at 10"]),
    ("capped-at-max", config(max_replicas=3), Script([(60, 80, 1, ())], current=2), 3, SCALED_UP,
     False, ["asks for 10", "capped at max_replicas 3"]),
    ("raised-to-min", config(min_replicas=2), Script([(60, 0, 0, ())], current=2), 2, HELD, False,
     ["raised to min_replicas 2"]),
    ("tolerance", config(), Script([(60, 88, 1, ())], current=10), 10, HELD, False,
     ["asks for 11", "within the 10% tolerance"]),
    ("new-scaler-does-not-scale-down", config(), Script([(30, 8, 1, ())], current=4), 4, HELD,
     False, ["no scale-down on less than 60 s of data"]),
    ("keeps-one-while-not-idle-long", config(min_replicas=0, scale_to_zero_after_s=300),
     Script([(10, 8, 1, ()), (200, 0, 0, ())], current=3, follow=True), 1, HELD, False,
     ["idle for 190 s, scale to zero after 300 s"]),
    ("scale-to-zero", config(min_replicas=0, scale_to_zero_after_s=300),
     Script([(10, 8, 1, ()), (310, 0, 0, ())], current=1), 0, SCALED_TO_ZERO, False,
     ["scaled 1 -> 0: idle for 300 s, scale to zero after 300 s"]),
    ("min-one-never-zero", config(min_replicas=1, scale_to_zero_after_s=0),
     Script([(10, 8, 1, ()), (400, 0, 0, ())], current=1), 1, HELD, False, ["held at 1"]),
    ("from-zero-on-first-request", config(min_replicas=0, panic_threshold=2.0,
                                          scale_up=ScalingConfig.model_fields["scale_up"].default),
     Script([(400, 0, 0, ()), (402, 3, 3, ())], current=0, ready=0), 1, SCALED_UP, True,
     ["scaled 0 -> 1 (panic)"]),
]


@pytest.mark.parametrize("cfg, script, desired, code, panic, words",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision(cfg: ScalingConfig, script: Script, desired: int, code: str, panic: bool,
                  words: list[str]) -> None:
    d = script.run(ServiceScaler(cfg))
    assert (d.desired, d.code, d.panic) == (desired, code, panic), d.reason
    for w in words:
        assert w in d.reason


def test_reason_of_the_issue_example() -> None:
    """The issue's sentence, word for word, at 100% utilisation."""
    d = Script([(60, 38, 3, ())], current=2).run(ServiceScaler(config()))
    assert d.reason == "scaled 2 -> 5: 38 in flight (60 s average), target 8 per replica"
    assert d.governing is not None and d.governing.observed == 38


def test_time_must_not_go_back() -> None:
    s = ServiceScaler(config())
    s.observe(10, in_flight=1)
    with pytest.raises(ValueError, match="back in time"):
        s.observe(9, in_flight=1)


def test_same_inputs_same_decisions() -> None:
    def run() -> list[tuple[int, str]]:
        script = Script([(60, 16, 1, ()), (64, 64, 1, ()), (300, 8, 1, ())], current=2,
                        follow=True)
        script.run(ServiceScaler(ScalingConfig(targets=(Target(kind=TargetKind.IN_FLIGHT, value=8),))))
        return [(d.desired, d.reason) for d in script.decisions]

    assert run() == run()


def test_backlog_is_not_taken_for_lasting_load() -> None:
    """2.5 arrivals/s, 30 running, 150 finished in 60 s: a request holds a slot 30 / 2.5 = 12 s.
    60 queued: KPA's rule wants ceil(90 / 8) = 12 replicas; lasting load is 2.5 x 12 = 30 in
    flight plus 60 x 12 / 60 = 12 to clear the queue in 60 s: 42, so 6 replicas."""
    def run(clear: float | None) -> Decision:
        s = ServiceScaler(config(backlog_clear_s=clear))
        for t in range(0, 61, 2):
            s.observe(t, in_flight=90, arrivals=5, latencies=[1.0] * 5, running=30)
        return s.decide(60, current=4)

    d = run(60.0)
    assert d.desired == 6
    assert d.reason == ("scaled 4 -> 6: 90 in flight (60 s average) but 42 needed (2.5/s x 12 s "
                        "held + 60 queued cleared in 60 s), target 8 per replica")
    assert run(None).desired == 12  # the plain KPA rule


def test_backlog_rule_never_asks_for_more_than_kpa() -> None:
    """Little's law caps the in-flight rule; it never raises it (no queue, little hold)."""
    s = ServiceScaler(config())
    for t in range(0, 61, 2):
        s.observe(t, in_flight=40, arrivals=1, latencies=[1.0] * 10, running=40)
    assert s.decide(60, current=5).desired == 5


def test_running_above_in_flight_refused() -> None:
    with pytest.raises(ValueError, match="running: must be within"):
        ServiceScaler(config()).observe(0, in_flight=3, running=4)


LATENCY_ONLY = config(targets=(Target(kind=TargetKind.LATENCY, value=1.0),))


def test_latency_spike_does_not_compound() -> None:
    """A 4 s p99 against 1 s asks for x2 (at most) of the 3 ready; once 6 are ready, the old
    latencies were served by 3 and no longer count: without fresh ones it holds."""
    s = ServiceScaler(LATENCY_ONLY)
    for t in range(0, 61, 2):
        s.observe(t, in_flight=10, arrivals=5, latencies=[4.0] * 5)
    first = s.decide(60, current=3)
    assert first.desired == 6
    assert "p99 latency 4 s over 150 requests" in first.reason
    assert "x2 at most per step" in first.reason
    s.observe(62, in_flight=10, arrivals=5, latencies=[4.0] * 5)
    later = s.decide(62, current=6, ready=6)
    assert later.desired == 6 and later.reason == "held at 6: no metric yet"


def test_latency_needs_enough_requests() -> None:
    s = ServiceScaler(LATENCY_ONLY)
    for t in range(0, 61, 2):
        s.observe(t, in_flight=1, arrivals=1, latencies=[9.0] if t == 60 else [])
    assert s.decide(60, current=2).desired == 2  # one slow request is not a p99


def test_latency_under_target_halves_at_most() -> None:
    s = ServiceScaler(LATENCY_ONLY)
    for t in range(0, 121, 2):
        s.observe(t, in_flight=1, arrivals=1, latencies=[0.1] * 5)
    d = s.decide(120, current=8)
    assert d.desired == 4 and "x2 at most per step" in d.reason
