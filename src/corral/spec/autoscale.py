"""A service's `autoscale` section: what the control plane's autoscaler tracks (issue 12).

    kind: service
    min_replicas: 0            # 0 allows scale to zero
    max_replicas: 8            # required with autoscale: the most replicas it may start
    target_utilization: 0.7    # the share of each target aimed at (headroom for bursts)
    autoscale:
      target_in_flight: 8      # requests in flight (queued + running) per replica
      target_rps: 20           # and/or requests/s per replica
      target_latency: 2s       # and/or a latency percentile for the whole service
      latency_percentile: 99   # 95 or 99
      scale_to_zero_after: 5m  # with min_replicas 0: idle this long -> 0 replicas
      scale_down_window: 2m    # a scale-down follows the highest count asked for this long
      stable_window: 60s       # the averaging window (the panic window is a tenth of it)

This is the spec's form of `corral.serving.ScalingConfig`; `scaling_config` maps one onto the
other, with the bounds and `target_utilization` from the service's own fields so a service has
one `max_replicas`, which both `corral scale` and the autoscaler obey.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.serving import Behavior, RateLimit, ScalingConfig, Target, TargetKind
from corral.spec.quantities import DurationS

__all__ = ["DEFAULT_UTILIZATION", "AutoscaleSpec", "autoscale_note", "scaling_config"]

#: `target_utilization` when the spec leaves it out (Knative's 70%)
DEFAULT_UTILIZATION = 0.7
_DAY = 86400.0


class AutoscaleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target_in_flight: float | None = Field(
        None, gt=0, le=100_000, strict=True, allow_inf_nan=False,
        description="requests in flight (queued at the gateway + running) per replica")
    target_rps: float | None = Field(
        None, gt=0, le=1_000_000, strict=True, allow_inf_nan=False,
        description="requests per second per replica")
    target_latency: DurationS | None = Field(
        None, description="a latency percentile (latency_percentile) for the whole service")
    latency_percentile: Literal[95, 99] = 99
    scale_to_zero_after: DurationS = Field(
        300.0, description="with min_replicas 0: scale to zero after this long with no request")
    scale_down_window: DurationS = Field(
        120.0, description="a scale-down follows the highest count asked for over this long")
    stable_window: DurationS = Field(
        60.0, description="the averaging window; the panic window is a tenth of it")

    @field_validator("target_latency")
    @classmethod
    def _latency(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 3600:
            raise ValueError("must be more than 0 and at most 1h, e.g. 2s")
        return v

    @field_validator("scale_to_zero_after")
    @classmethod
    def _idle(cls, v: float) -> float:
        if not 0 <= v <= _DAY:
            raise ValueError("must be 0 or more and at most 24h, e.g. 5m")
        return v

    @field_validator("scale_down_window")
    @classmethod
    def _down(cls, v: float) -> float:
        if not 0 <= v <= 3600:
            raise ValueError("must be 0 or more and at most 1h, e.g. 2m")
        return v

    @field_validator("stable_window")
    @classmethod
    def _stable(cls, v: float) -> float:
        if not 6 <= v <= 3600:
            raise ValueError("must be at least 6s and at most 1h, e.g. 60s")
        return v

    @model_validator(mode="after")
    def _a_target(self) -> AutoscaleSpec:
        if self.targets() == ():
            raise ValueError("autoscale needs a target: target_in_flight, target_rps or "
                             "target_latency")
        return self

    def targets(self) -> tuple[Target, ...]:
        out = []
        if self.target_in_flight is not None:
            out.append(Target(kind=TargetKind.IN_FLIGHT, value=self.target_in_flight))
        if self.target_rps is not None:
            out.append(Target(kind=TargetKind.RPS, value=self.target_rps))
        if self.target_latency is not None:
            out.append(Target(kind=TargetKind.LATENCY, value=self.target_latency,
                              percentile=self.latency_percentile))
        return tuple(out)


def scaling_config(auto: AutoscaleSpec, min_replicas: int, max_replicas: int,
                   target_utilization: float | None) -> ScalingConfig:
    """The serving policy's config for a service with these bounds (`replica_bounds`)."""
    return ScalingConfig(
        targets=auto.targets(), min_replicas=min_replicas, max_replicas=max_replicas,
        target_utilization=(DEFAULT_UTILIZATION if target_utilization is None
                            else target_utilization),
        scale_to_zero_after_s=auto.scale_to_zero_after, stable_window_s=auto.stable_window,
        panic_window_s=auto.stable_window / 10,
        scale_down=Behavior(stabilization_s=auto.scale_down_window,
                            limits=(RateLimit(type="percent", value=100, period_s=15),)))


def autoscale_note(auto: AutoscaleSpec | None, lo: int, hi: int,
                   target_utilization: float | None) -> str:
    """What the autoscale section (or its absence) will do, for the dry run."""
    if auto is None:
        idle = ("; target_utilization does nothing without autoscale"
                if target_utilization is not None else "")
        return f"no autoscale: the replica count changes only by `corral scale`{idle}"
    util = DEFAULT_UTILIZATION if target_utilization is None else target_utilization
    aims = [f"{t.value:g} {_UNIT[t.kind]}" if t.kind is not TargetKind.LATENCY else
            f"p{t.percentile} latency {t.value:g}s" for t in auto.targets()]
    zero = (f"; scaled to zero after {auto.scale_to_zero_after:g}s without a request, and up "
            "again by the first request queued at the gateway" if lo == 0 else "")
    return (f"autoscaled within [{lo}, {hi}] every loop tick on the gateway's load: "
            f"{' or '.join(aims)}, aiming at {util * 100:g}% of it (target_utilization); "
            f"scale-down after {auto.scale_down_window:g}s of lower load{zero}; each change is "
            "an event with its reason (corral describe)")


_UNIT = {TargetKind.IN_FLIGHT: "in flight per replica", TargetKind.RPS: "requests/s per replica"}
