"""The gateway's knobs, in one frozen value; and a service's own (`ServiceLimits`), which
override the gateway's where a service's spec sets them (its `endpoint` section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.gateway.retries import RetryPolicy

__all__ = ["GatewayLimits", "ServiceLimits"]


@dataclass(frozen=True)
class GatewayLimits:
    #: to open a TCP connection to a replica; a refusal or this timeout is a connect error,
    #: the one failure where the request provably never reached the replica
    connect_timeout_s: float = 5.0
    #: from sending the request to the replica's response headers (a model's queueing and
    #: prefill time counts here: keep it above the slowest first token)
    first_byte_timeout_s: float = 120.0
    #: the whole request at the gateway, queue wait and a streamed response included; a stream
    #: still running at that point is cut (the client sees an incomplete body, not a success)
    total_timeout_s: float = 900.0
    #: tries per request, the first included (a retry always goes to another replica)
    max_tries: int = 3
    #: requests allowed to wait per service while it has no ready replica
    max_queue: int = 256
    #: how long a request waits in that queue before it is refused with 503
    max_queue_wait_s: float = 60.0
    #: the Retry-After (seconds) of a 503 the gateway itself answers
    retry_after_s: int = 2
    #: how long an idle keep-alive connection to a replica is kept. Below the replica server's
    #: own idle timeout (uvicorn's default is 5 s, and vLLM and most Python servers run on it):
    #: otherwise the replica may close a connection just as the gateway sends a request on it,
    #: and that request fails with no response (a POST then cannot be retried)
    upstream_idle_s: float = 4.0
    #: a connect error is retried even for POST/PATCH: the request never left the gateway, so
    #: at-most-once holds; without it, a replica killed before the prober notices drops every
    #: completion routed to it. False: only idempotent methods are ever retried.
    retry_unsent_non_idempotent: bool = True
    #: a request body is held up to this size while its tries run, so a try that failed can
    #: be sent again whole; a larger body streams on and is never retried (the 502 says so in
    #: X-Corral-Retry-Skipped: body_over_limit). 1 MiB holds a ~200,000-token prompt
    replay_buffer_bytes: int = 1 << 20
    #: the most a service's own `replay_buffer_bytes` may hold (its spec's
    #: `endpoint.retry.replay_buffer` is bounded by the same 16 MiB): memory per request in
    #: flight stays bounded whatever the specs say
    max_replay_buffer_bytes: int = 16 << 20
    #: a replica that broke a response off after its headers went out gets no new request
    #: for this long while another is trusted (or until it passes a probe, or restarts):
    #: Envoy's outlier detection ejects a host for its `base_ejection_time`, 30 s by default
    suspect_s: float = 30.0
    #: reset retries each service may spend per 10 s whatever its traffic, on top of its
    #: budget's fraction of requests (Finagle's minRetriesPerSec): a quiet service can still
    #: retry the one request a killed replica held
    retry_reserve: int = 10
    #: retries after a reset, for a service that sets none (`ServiceLimits.retry`)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: a WebSocket session with no message either way for this long is closed (1001): a
    #: client gone without a close frame must not hold a replica's slot for ever. AWS API
    #: Gateway's WebSocket limits are the model: 10 min idle, 2 h in all
    ws_idle_timeout_s: float = 600.0
    #: a WebSocket session is closed (1001) after this long whatever its traffic, so a drain
    #: or a rollout is never held by a session for longer
    ws_max_session_s: float = 7200.0

    def __post_init__(self) -> None:
        if min(self.replay_buffer_bytes, self.max_replay_buffer_bytes, self.retry_reserve) < 0:
            raise ValueError("replay_buffer_bytes, max_replay_buffer_bytes and retry_reserve "
                             "must be at least 0")
        for name in ("connect_timeout_s", "first_byte_timeout_s", "total_timeout_s",
                     "max_queue_wait_s", "upstream_idle_s", "suspect_s", "ws_idle_timeout_s",
                     "ws_max_session_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0")
        if self.max_tries < 1 or self.max_queue < 0 or self.retry_after_s < 0:
            raise ValueError("max_tries must be at least 1, max_queue and retry_after_s "
                             "at least 0")


@dataclass(frozen=True)
class ServiceLimits:
    """One service's limits; None: the gateway's own (`GatewayLimits`), or none at all."""

    #: requests running on the service's replicas at once (all replicas together); the next
    #: ones wait in the service's queue as if no replica were ready. None: no limit
    max_concurrent: int | None = None
    #: requests waiting in the service's queue (None: `GatewayLimits.max_queue`)
    max_queue: int | None = None
    #: how long one waits there before a 503 (None: `GatewayLimits.max_queue_wait_s`)
    queue_wait_s: float | None = None
    #: the whole request at the gateway (None: `GatewayLimits.total_timeout_s`)
    total_timeout_s: float | None = None
    #: to open a TCP connection to one of its replicas (None: `GatewayLimits.connect_timeout_s`)
    connect_timeout_s: float | None = None
    #: from sending a request to a replica's response headers (None: the gateway's)
    first_byte_timeout_s: float | None = None
    #: retries after a reset: which, how many per request, the budget (None: the gateway's)
    retry: RetryPolicy | None = None
    #: a WebSocket session idle this long is closed (None: `GatewayLimits.ws_idle_timeout_s`)
    ws_idle_timeout_s: float | None = None
    #: a WebSocket session is closed after this long (None: `GatewayLimits.ws_max_session_s`)
    ws_max_session_s: float | None = None
    #: request bodies held for a retry (None: `GatewayLimits.replay_buffer_bytes`); never more
    #: than `GatewayLimits.max_replay_buffer_bytes`
    replay_buffer_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.max_queue is not None and self.max_queue < 0:
            raise ValueError("max_queue must be at least 0")
        if self.replay_buffer_bytes is not None and self.replay_buffer_bytes < 0:
            raise ValueError("replay_buffer_bytes must be at least 0")
        for name in ("queue_wait_s", "total_timeout_s", "connect_timeout_s",
                     "first_byte_timeout_s", "ws_idle_timeout_s", "ws_max_session_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be above 0")
