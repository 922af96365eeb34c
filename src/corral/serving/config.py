"""What a service asks of its autoscaler: targets, bounds, windows, rate limits (validated).

A config is a frozen pydantic model so that a service spec, the control plane and the simulator
share one validated value; a mistake is a `pydantic.ValidationError` whose message names the field
(`max_replicas: must be >= min_replicas (2), got 1`).

Defaults follow the references they come from:
- Knative's KPA (knative.dev/docs/serving/autoscaling): stable window 60 s, panic window 6 s
  (10% of the stable window), panic threshold 200%, target utilisation 70%
  (`container-concurrency-target-percentage`), scale-to-zero grace period 30 s.
- Kubernetes' HPA `behavior` (kubernetes.io, HorizontalPodAutoscalerBehavior): scale-up with no
  stabilisation, at most the larger of +100% or +4 replicas per 15 s; scale-down stabilised over
  300 s, at most -100% per 15 s; a 10% tolerance around the target.
corral's defaults differ where a GPU replica differs from a pod: scale to zero after 300 s idle
(a cold start costs a minute of model loading, not a second) and a 120 s scale-down window.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Behavior", "RateLimit", "ScalingConfig", "Select", "Target", "TargetKind"]


class TargetKind(StrEnum):
    IN_FLIGHT = "in_flight"  # requests in flight (queued at the gateway + running) per replica
    RPS = "rps"  # arrivals per second per replica
    LATENCY = "latency"  # a percentile of request latency, in seconds, for the whole service


class Target(BaseModel):
    """One metric to track. With several targets a service gets the largest proposal (as HPA)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    value: float = Field(gt=0, description="per replica (in_flight, rps) or seconds (latency)")
    percentile: Literal[95, 99] = 99  # latency only


class Select(StrEnum):
    MAX = "max"  # the most permissive of the rate limits (HPA's default)
    MIN = "min"  # the most restrictive


class RateLimit(BaseModel):
    """At most `value` replicas (or percent of the replicas) of change per `period_s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pods", "percent"]
    value: float = Field(gt=0)
    period_s: float = Field(gt=0, le=1800)


class Behavior(BaseModel):
    """One direction of scaling: a stabilisation window and rate limits (HPA's HPAScalingRules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stabilization_s: float = Field(default=0.0, ge=0, le=3600)
    limits: tuple[RateLimit, ...] = ()
    select: Select = Select.MAX


_UP = Behavior(limits=(RateLimit(type="percent", value=100, period_s=15),
                       RateLimit(type="pods", value=4, period_s=15)))
_DOWN = Behavior(stabilization_s=120.0, limits=(RateLimit(type="percent", value=100, period_s=15),))


class ScalingConfig(BaseModel):
    """The autoscaling section of a service: targets, bounds, windows and behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: tuple[Target, ...] = Field(min_length=1)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    #: a share of the target to aim at, leaving the rest as headroom for bursts (KPA: 70%)
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    #: with min_replicas 0: scale to zero after this long with no request in flight or arriving
    scale_to_zero_after_s: float = Field(default=300.0, ge=0)
    stable_window_s: float = Field(default=60.0, gt=0, le=3600)
    panic_window_s: float = Field(default=6.0, gt=0)
    #: enter panic when the panic window wants this multiple of the ready replicas (None: never)
    panic_threshold: float | None = Field(default=2.0, gt=1)
    #: in-flight target: when the gateway also reports `running`, a queue is not taken for
    #: lasting load: replicas are sized for arrivals/s x the seconds a request holds a slot
    #: (Little's law) plus the queue cleared within this many seconds (None: plain KPA rule)
    backlog_clear_s: float | None = Field(default=60.0, gt=0)
    #: a change smaller than this share of the current replicas is not made (HPA: 10%)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_up: Behavior = _UP
    scale_down: Behavior = _DOWN

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas: must be >= min_replicas ({self.min_replicas}), "
                             f"got {self.max_replicas}")
        if self.panic_window_s > self.stable_window_s:
            raise ValueError(f"panic_window_s: must be <= stable_window_s "
                             f"({self.stable_window_s:g}), got {self.panic_window_s:g}")
        kinds = [t.kind for t in self.targets]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"targets: one target per kind, got {[str(k) for k in kinds]}")
        return self
