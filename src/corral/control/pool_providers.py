"""Providers of the pool file, built: which rent (aws; ssh once its provider exists), their
autoscaler bounds, and the `PoolAutoscaler` that rents from them, or None when none rents.

    providers:
      - name: aws-use1
        kind: aws                      # static (default) | ssh | aws
        settings: {region: us-east-1, image_id: ami-0abc..., instance_types: [p5.48xlarge, g6.xlarge]}
        min_nodes: 0
        max_nodes: 8
        max_spend_per_hour: 400

A static provider rents nothing and is not handed to the autoscaler: its nodes are the pool
file's and are never returned. A join token is made per launch, good for as many joins as
instances launched, and expires after the autoscaler's join timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from sqlalchemy import select

from corral.autoscale.pool import AutoscalerConfig, ProviderLimits
from corral.control.autoscale import PoolAutoscaler
from corral.core.model import CapacityKind
from corral.providers.base import Provider
from corral.spec.pool import PoolSpec, ProviderSpec
from corral.store import Store

__all__ = ["autoscaler_from_pool", "provider_limits", "renting_providers"]


def renting_providers(spec: PoolSpec | None, cluster_id: str) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for p in spec.providers if spec is not None else ():
        if p.kind == "aws":
            out[p.name] = _aws(p, cluster_id)
    return out


def _aws(p: ProviderSpec, cluster_id: str) -> Provider:
    from corral.providers.aws import AwsProvider, AwsSettings

    s = p.aws
    return AwsProvider(p.name, cluster_id, AwsSettings(
        s.region, s.image_id, tuple(s.instance_types), tuple(s.zones),
        tuple(CapacityKind(k) for k in s.capacity_kinds), s.subnet_id,
        tuple(s.security_group_ids), s.iam_instance_profile,
        {k: Decimal(repr(v)) for k, v in s.on_demand_prices.items()}, s.endpoint_url))


def provider_limits(spec: PoolSpec | None) -> dict[str, ProviderLimits]:
    return {p.name: ProviderLimits(p.min_nodes, p.max_nodes,
                                   None if p.max_spend_per_hour is None
                                   else Decimal(repr(p.max_spend_per_hour)))
            for p in (spec.providers if spec is not None else ()) if p.kind != "static"}


def autoscaler_from_pool(store: Store, spec: PoolSpec | None, cluster_id: str, server_url: str,
                         now: Callable[[], float], config: AutoscalerConfig | None = None,
                         providers: Mapping[str, Provider] | None = None
                         ) -> PoolAutoscaler | None:
    """The autoscaler over the pool file's renting providers; None when there is none."""
    renting = dict(providers) if providers is not None else renting_providers(spec, cluster_id)
    if not renting:
        return None
    config = config or AutoscalerConfig()

    def join_token(uses: int) -> str:
        from corral.store.agents import create_join_token

        with store.write() as conn:
            _, token = create_join_token(conn, "autoscaler", now(), name="autoscaler",
                                         uses=uses, expires_at=now() + config.join_timeout_s)
        return token

    return PoolAutoscaler(store, renting, cluster_id, server_url, join_token, config,
                          provider_limits(spec), joined=lambda ids: _joined(store, ids))


def _joined(store: Store, instance_ids: Sequence[str]) -> dict[str, str]:
    """instance id -> node id, from the agents that joined reporting their instance id."""
    from corral.store.agents import AgentNodeRow

    with store.read() as conn:
        rows = conn.execute(select(AgentNodeRow.instance_id, AgentNodeRow.node_id)
                            .where(AgentNodeRow.instance_id.in_(list(instance_ids)),
                                   AgentNodeRow.lost_at.is_(None)))
        return {r.instance_id: r.node_id for r in rows}
