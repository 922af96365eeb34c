"""The wire shape of /v1/workloads/{id}/deliveries: a workload's webhook delivery log.

Shared by the API (`corral.api.webhooks`) and the CLI (`corral describe`); pydantic only.
Never a secret's value: a delivery names the secret it was signed with, nothing more.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Delivery", "DeliveryPage"]


class Delivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    workload_id: str
    url: str
    event: str
    state: str  # pending | delivered | failed | dropped
    attempts: int
    created_at: float
    next_at: float | None  # pending: when it is tried next
    finished_at: float | None
    last_status: int | None
    last_error: str
    signed_with: str | None  # the secret's name


class DeliveryPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[Delivery]
