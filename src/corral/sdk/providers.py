"""The SDK's view of renting providers declared in the store (`corral providers add/rm/ls`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeclaredProvider"]


class DeclaredProvider(BaseModel):
    """A renting provider as declared: its settings (which never hold a secret: credentials
    are named, by an AWS profile or a key file's path on the server), its bounds, where it
    was declared and where it is in its life (active, retiring while `rm` drains it, removed)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    name: str
    kind: str
    origin: str = Field(description="file (the pool file) or api (added at run time)")
    lifecycle: str = Field(description="active | retiring (draining, returning its capacity) | "
                           "removed")
    region: str = "default"
    capacity_kind: str = "on-demand"
    min_nodes: int = 0
    max_nodes: int | None = None
    max_spend_per_hour: float | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
