"""The serving endpoint: a streaming reverse proxy from `/serve/<service>/...` to a service's
ready replicas, with balancing, auth, timeouts, retries, a scale-from-zero queue, metrics and
readiness probing. See README.md in this folder."""

from corral.gateway.app import Gateway, create_gateway_app
from corral.gateway.limits import GatewayLimits, ServiceLimits
from corral.gateway.probes import Prober, ProbeSpec, ProbeTracker
from corral.gateway.routes import (
    Replica,
    ReplicaState,
    RouteTable,
    ServiceAuth,
    ServiceRoute,
    wait_drained,
)

__all__ = [
    "Gateway",
    "GatewayLimits",
    "ProbeSpec",
    "ProbeTracker",
    "Prober",
    "Replica",
    "ReplicaState",
    "RouteTable",
    "ServiceAuth",
    "ServiceLimits",
    "ServiceRoute",
    "create_gateway_app",
    "wait_drained",
]
