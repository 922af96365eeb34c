"""The gateway's Prometheus metrics, per service, in a registry of its own (two gateways in one
process, as in tests, do not collide).

    corral_gateway_requests_total{service, code}      responses sent, by status code
    corral_gateway_errors_total{service, reason}      requests that failed at the gateway:
                                                      connect, first_byte_timeout, total_timeout,
                                                      upstream_reset, upstream_broken, queue_full, queue_timeout
    corral_gateway_streams_lost_total{service, cause} responses cut after their headers went
                                                      out (the client sees an incomplete body):
                                                      replica_reset (the replica closed or reset
                                                      the connection: killed), replica_error,
                                                      total_timeout
    corral_gateway_bodies_over_buffer_total{service}  requests whose body outgrew the service's
                                                      replay buffer: streamed, never retried
    corral_gateway_retries_total{service}             tries sent to another replica
    corral_gateway_retries_skipped_total{service, reason}  failed tries not sent again: policy,
                                                      body_over_limit, attempts, budget,
                                                      no_replica (`retries.Skip`)
    corral_gateway_first_byte_seconds{service}        until the replica's response headers
    corral_gateway_request_seconds{service}           until the response's last byte
    corral_gateway_in_flight{service}                 requests being served (queue included)
    corral_gateway_queue_length{service}              requests waiting for a ready replica
    corral_gateway_replicas{service, state}           replicas by state, read from the table
    corral_gateway_replicas_suspect{service}          ready replicas avoided now: they broke a
                                                      response off (`RouteTable.mark_suspect`)

Only services in the route table get labels: a request for a name that is not one is counted
under service="" so that hostile names cannot grow the label set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from corral.gateway.routes import ReplicaState, RouteTable

__all__ = ["GatewayMetrics"]

#: from 5 ms (a proxied health check) to 10 min (a long streamed generation)
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    def __init__(self, table: RouteTable, queued: Callable[[str], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("corral_gateway_requests", "responses sent, by status code",
                                ["service", "code"], registry=r)
        self.errors = Counter("corral_gateway_errors", "requests failed at the gateway",
                              ["service", "reason"], registry=r)
        self.streams_lost = Counter("corral_gateway_streams_lost",
                                    "responses cut after their headers went out, by cause",
                                    ["service", "cause"], registry=r)
        self.bodies_over_buffer = Counter(
            "corral_gateway_bodies_over_buffer", "requests whose body outgrew the replay "
            "buffer: streamed to one replica, never retried", ["service"], registry=r)
        self.retries = Counter("corral_gateway_retries", "tries sent to another replica",
                               ["service"], registry=r)
        self.retries_skipped = Counter("corral_gateway_retries_skipped",
                                       "failed tries not sent again, by reason",
                                       ["service", "reason"], registry=r)
        self.first_byte = Histogram("corral_gateway_first_byte_seconds",
                                    "time to the replica's response headers", ["service"],
                                    buckets=_BUCKETS, registry=r)
        self.total = Histogram("corral_gateway_request_seconds",
                               "time to the response's last byte", ["service"],
                               buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("corral_gateway_in_flight", "requests being served",
                               ["service"], registry=r)
        r.register(_TableCollector(table, queued))


class _TableCollector(Collector):
    """Replicas by state and queue lengths, read at scrape time from the table itself, so they
    can never drift from it."""

    def __init__(self, table: RouteTable, queued: Callable[[str], int]) -> None:
        self._table, self._queued = table, queued

    def collect(self) -> Iterator[GaugeMetricFamily]:
        replicas = GaugeMetricFamily("corral_gateway_replicas", "replicas by state",
                                     labels=["service", "state"])
        queue = GaugeMetricFamily("corral_gateway_queue_length",
                                  "requests waiting for a ready replica", labels=["service"])
        suspect = GaugeMetricFamily("corral_gateway_replicas_suspect",
                                    "ready replicas new requests avoid (a response cut)",
                                    labels=["service"])
        # asyncio's own clock (its default loop reads time.monotonic), whatever thread scrapes
        now = time.monotonic()
        for route in self._table.services():
            for state in ReplicaState:
                count = sum(1 for x in route.replicas.values() if x.state is state)
                replicas.add_metric([route.name, state.value], count)
            queue.add_metric([route.name], self._queued(route.name))
            suspect.add_metric([route.name], sum(1 for x in route.ready() if x.suspect(now)))
        yield replicas
        yield queue
        yield suspect
