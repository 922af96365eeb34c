"""The `checkpoint:` section of a workload: how often it saves its progress, for the spot rule.

    checkpoint: {every: 30m, on_notice: 20s}

`every`: it writes a checkpoint this often, so an interruption loses half of that on average;
`on_notice`: it writes one in this long when warned (SIGTERM with the deadline file), so a spot
interruption whose notice is at least this long loses nothing. With either, and the providers'
interruption rates in the pool file (`autoscaler.spot_risk`), interrupted work stays on spot
while spot's price with the lost work and the restart counted beats on-demand
(`corral.autoscale.spot`). A workload without `checkpoint:` keeps the plain count
(`autoscaler.spot_fallback_after` interruptions, then on-demand only). Where it writes is
`checkpoint_dir`, a separate field: this says only when.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.spec.quantities import DurationS

__all__ = ["CheckpointSpec"]


class CheckpointSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    every: DurationS | None = Field(None, gt=0, description=(
        "it writes a checkpoint this often (e.g. 30m)"))
    on_notice: DurationS | None = Field(None, le=3600, description=(
        "it writes one in this long when warned to stop (e.g. 20s); a notice at least this "
        "long then loses nothing"))

    @model_validator(mode="after")
    def _said(self) -> CheckpointSpec:
        if self.every is None and self.on_notice is None:
            raise ValueError("checkpoint says nothing: give every (how often it writes a "
                             "checkpoint), on_notice (how long writing one takes when warned), "
                             "or both; or leave checkpoint out")
        return self
