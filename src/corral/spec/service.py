"""Service-only parts of a workload spec: the readiness and liveness probes.

    readiness:
      path: /health          # GET http://<replica>:<port><path>; 2xx or 3xx passes
      port: 8080             # default: the replica's own port (CORRAL_PORT)
      period_s: 5            # between probes of one replica
      timeout_s: 1           # a probe slower than this fails
      failure_threshold: 3   # failures in a row before a ready replica stops taking traffic
      success_threshold: 1   # passes in a row before a replica takes traffic

Without `readiness` a replica is ready as soon as its process runs. The probe only gates
traffic (a replica that is not ready gets none); a replica whose process exits is restarted
whatever its probe says (`corral.control.replicas`).

`liveness` has the same fields (its `success_threshold` unused) plus `initial_delay_s` (probes
start that long after the replica started): after `failure_threshold` failures in a row the
replica is stopped and restarted (a hung server that still holds its port), reason
LivenessFailed.

The endpoint (`/serve/<service>/...` on corral's gateway):

    auth:
      token_sha256: 9f86d0...    # callers send `Authorization: Bearer <token>`; only its
                                 # SHA-256 is in the spec (printf %s TOKEN | sha256sum)
    endpoint:
      max_concurrent: 64         # requests on the replicas at once; the next ones queue
      max_queue: 100             # requests waiting (none ready, or at max_concurrent)
      queue_timeout: 30s         # a wait longer than this is a 503 with Retry-After
      request_timeout: 5m        # the whole request at the gateway; a longer stream is cut
      connect_timeout: 2s        # to open a connection to a replica; a replica that cannot be
                                 # reached in time is tried no more, the next one is
      first_byte_timeout: 60s    # from sending a request to a replica to its response headers
                                 # (queueing and prefill count): then a 504, never retried
      retry:                     # a connection that breaks before any response (a replica
        on_reset: true           # killed mid-request): POSTs too (default true: a completion
                                 # run twice costs only compute; false where POSTs have effects)
        attempts: 2              # tries of one request, the first included
        budget: 0.2              # reset retries per service: at most this fraction of its
                                 # requests (plus a small reserve), so a crash loop cannot
                                 # double the load
        replay_buffer: 4MiB      # bodies held so a retry can resend them (default 1MiB, at
                                 # most 16MiB); a larger one streams to one replica, no retry
      websocket:                 # WebSocket sessions (they wait in the same queue)
        idle_timeout: 10m        # no message either way this long: closed (1001)
        max_session: 2h          # closed (1001) after this long whatever its traffic

Or, instead of a digest in the spec, the token in a secret the service's queue may use
(`corral secrets set chat-token --queue q`): the gateway checks the bearer token against the
secret's current value (a new value takes effect within seconds, no redeploy):

    auth:
      token_secret: chat-token

Without `auth` the endpoint is public; without `endpoint`, the gateway's own limits hold.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from corral.spec import limits as LIM
from corral.spec.autoscale import autoscale_note
from corral.spec.quantities import DurationS

if TYPE_CHECKING:
    from corral.spec.workload import WorkloadSpec

__all__ = ["EndpointSpec", "ReadinessProbe", "RetrySpec", "ServiceAuthSpec", "WebSocketSpec",
           "service_notes"]


class ReadinessProbe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Annotated[str, Field(max_length=LIM.MAX_PATH_CHARS)] = Field(
        description="the HTTP path probed with GET, e.g. /health")
    port: int | None = Field(None, ge=1, le=65535, strict=True,
                             description="the port probed; default: the replica's CORRAL_PORT")
    period_s: DurationS = Field(5.0, description="between two probes of one replica")
    timeout_s: DurationS = Field(1.0, description="a probe slower than this fails")
    failure_threshold: int = Field(3, ge=1, le=100, strict=True)
    success_threshold: int = Field(1, ge=1, le=100, strict=True)
    initial_delay_s: DurationS = Field(0.0, description="no probe before the replica has run "
                                       "this long (liveness: time to load a model)")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or any(c.isspace() for c in v):
            raise ValueError("path must start with '/' and hold no spaces, e.g. /health")
        return v

    @field_validator("period_s", "timeout_s")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not 0 < v <= 3600:
            raise ValueError("must be more than 0 and at most 1h, e.g. 5s")
        return v

    @field_validator("initial_delay_s")
    @classmethod
    def _delay(cls, v: float) -> float:
        if not 0 <= v <= 3600:
            raise ValueError("must be 0 or more and at most 1h, e.g. 30s")
        return v


class ServiceAuthSpec(BaseModel):
    """Who may call a service's endpoint: a bearer token, known to the spec only by its SHA-256
    (`token_sha256`) or by the name of a secret that holds it (`token_secret`). The token itself
    is never in a spec, shown or logged; the gateway compares digests in constant time and does
    not pass the header on to replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_sha256: str | None = Field(
        None, description="the SHA-256 of the bearer token, 64 hex digits (printf %s TOKEN | "
        "sha256sum)")
    token_secret: str | None = Field(
        None, description="the name of a secret (`corral secrets set NAME --queue Q`) whose "
        "value is the bearer token; the service's queue must be allowed to use it")

    @field_validator("token_sha256")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower()
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("must be the token's SHA-256 as 64 hex digits (printf %s TOKEN | "
                             "sha256sum), never the token itself")
        return v

    @field_validator("token_secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        from corral.spec.workload import check_name  # the one rule for names

        return None if v is None else check_name(v, "token_secret (a secret's name)")

    @model_validator(mode="after")
    def _one(self) -> ServiceAuthSpec:
        if (self.token_sha256 is None) == (self.token_secret is None):
            raise ValueError("give exactly one of token_sha256 (the token's SHA-256) and "
                             "token_secret (the name of a secret holding the token)")
        return self


#: the largest `endpoint.retry.replay_buffer` (the gateway holds at most this per request:
#: 256 requests in flight then hold up to 4 GiB); `GatewayLimits.max_replay_buffer_bytes`
MAX_REPLAY_BUFFER_BYTES = 16 << 20
_BUFFER = re.compile(r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(B|KiB|Ki|K|KB|MiB|Mi|M|MB)?\s*",
                     re.IGNORECASE)
_SHIFT = {"B": 0, "K": 10, "M": 20}


def _replay_buffer_bytes(value: object) -> int:
    """'4MiB' -> 4194304; '512KiB' -> 524288; '100B' -> 100; 2 -> 2 MiB (a plain number is
    MiB, as every size in a spec); bounded by MAX_REPLAY_BUFFER_BYTES."""
    found = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        found = float(max(min(value, 1 << 40), -1)) * (1 << 20)  # ints too large for a float
    elif isinstance(value, str) and (m := _BUFFER.fullmatch(value)):
        found = float(m.group(1)) * (1 << _SHIFT[(m.group(2) or "M")[0].upper()])
    if found is None or found != found:  # not a size, or NaN
        raise ValueError(f"{str(value)[:40]!r} is not a size; write it like 4MiB or 512KiB")
    if not 0 <= found <= MAX_REPLAY_BUFFER_BYTES:
        raise ValueError(f"must be from 0 to {MAX_REPLAY_BUFFER_BYTES >> 20}MiB (the "
                         "gateway's ceiling), e.g. 4MiB; a larger body is streamed without "
                         "retries anyway")
    return int(found)


def _size_text(n: int) -> str:
    """How a size is written back (a stored spec is validated again, where a plain number
    would mean MiB): 4194304 -> '4MiB', 524288 -> '512KiB', 100 -> '100B'."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


ReplayBufferBytes = Annotated[
    int, BeforeValidator(_replay_buffer_bytes), PlainSerializer(_size_text),
    # what a file may hold (editors check it): a number of MiB or a size with its unit
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 16,
                               "description": "MiB"},
                              {"type": "string", "pattern": f"^(?:{_BUFFER.pattern})$"}],
                    "examples": ["4MiB", "512KiB", 2]})]


class RetrySpec(BaseModel):
    """Retries at the gateway after a reset (the connection broke before any response).
    GET/PUT/DELETE are always retried (bounded the same way); `on_reset` adds POST/PATCH."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_reset: bool = Field(
        True, strict=True, description="retry a POST/PATCH whose connection broke before any "
        "response, on another replica: true for inference (running a completion twice costs "
        "compute only), false where a POST has effects (writes, payments)")
    attempts: int = Field(
        2, ge=1, le=10, strict=True, description="tries of one request whose tries end in "
        "resets, the first included (2: one retry)")
    budget: float = Field(
        0.2, ge=0, le=1, strict=True, description="reset retries per service, as a fraction of its "
        "requests over the last 10 s (above a reserve of 10): 0.2 lets a crash loop add at "
        "most ~20% load")
    replay_buffer: ReplayBufferBytes | None = Field(
        None, description="request bodies up to this size are held while their tries run, "
        "so a retry can send them again (default 1MiB, at most 16MiB: the gateway's "
        "ceiling); a larger body streams to one replica and is never retried (the response "
        "says so in X-Corral-Retry-Off). 0: no body is held, only bodiless requests retry")


class WebSocketSpec(BaseModel):
    """Limits of a WebSocket session through the gateway (default: 10m idle, 2h in all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_timeout: DurationS | None = Field(
        None, description="no message either way for this long: the session is closed (1001)")
    max_session: DurationS | None = Field(
        None, description="a session is closed (1001) after this long, whatever its traffic")

    @field_validator("idle_timeout", "max_session")
    @classmethod
    def _duration(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 7 * 86400:
            raise ValueError("must be more than 0 and at most 7d, e.g. 10m")
        return v


class EndpointSpec(BaseModel):
    """A service's own limits at the gateway; a field left out keeps the gateway's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_concurrent: int | None = Field(
        None, ge=1, le=1_000_000, strict=True, description="requests on the service's "
        "replicas at once (all together); the next ones wait in its queue")
    max_queue: int | None = Field(
        None, ge=0, le=100_000, strict=True, description="requests waiting for a replica "
        "(none ready, or max_concurrent reached); a full queue answers 503 with Retry-After")
    queue_timeout: DurationS | None = Field(
        None, description="how long a request waits in the queue before a 503")
    request_timeout: DurationS | None = Field(
        None, description="the whole request at the gateway, queue wait and streamed "
        "response included; a response still running then is cut")
    connect_timeout: DurationS | None = Field(
        None, description="to open a connection to a replica; a replica not reached in time "
        "did not see the request, which goes to another ready replica")
    first_byte_timeout: DurationS | None = Field(
        None, description="from sending a request to a replica to its response headers "
        "(queueing and prefill count); then a 504, never retried (the replica may have run "
        "it)")
    retry: RetrySpec | None = Field(
        None, description="retries after a reset before any response (default: on_reset "
        "true, attempts 2, budget 0.2)")
    websocket: WebSocketSpec | None = Field(
        None, description="WebSocket sessions' idle timeout and longest length")

    @field_validator("queue_timeout", "request_timeout", "first_byte_timeout")
    @classmethod
    def _duration(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 86400:
            raise ValueError("must be more than 0 and at most 24h, e.g. 30s")
        return v

    @field_validator("connect_timeout")
    @classmethod
    def _connect(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 300:
            raise ValueError("must be more than 0 and at most 5m, e.g. 2s (a replica on a "
                             "reachable host accepts in milliseconds)")
        return v

    @model_validator(mode="after")
    def _order(self) -> EndpointSpec:
        total = self.request_timeout
        for name in ("queue_timeout", "connect_timeout", "first_byte_timeout"):
            value = getattr(self, name)
            if value is not None and total is not None and value > total:
                raise ValueError(f"{name} must not exceed request_timeout (it is part of the "
                                 f"request): {value:g}s > {total:g}s")
        return self


def service_notes(spec: WorkloadSpec) -> list[str]:
    """What a service's fields will do, in sentences (the dry run shows them); [] for others."""
    if spec.kind != "service":
        return []
    lo = spec.min_replicas if spec.min_replicas is not None else 1
    hi = spec.max_replicas if spec.max_replicas is not None else 1000
    notes = [f"{spec.replicas or 1} replica(s), kept serving: a replica that exits (any code) "
             f"is restarted after a backoff from {spec.restart_backoff:g}s; `corral scale` "
             f"moves the count within [{lo}, {hi}]",
             "each replica listens on the port in $PORT (also $CORRAL_PORT)",
             autoscale_note(spec.autoscale, lo, hi, spec.target_utilization)]
    if spec.liveness is not None:
        q = spec.liveness
        notes.append(f"liveness: GET {q.path} every {q.period_s:g}s from {q.initial_delay_s:g}s "
                     f"after start; restarted after {q.failure_threshold} failure(s) in a row")
    notes.append(_auth_note(spec))
    if spec.endpoint is not None:
        e = spec.endpoint
        said = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in (("max_concurrent", e.max_concurrent), ("max_queue", e.max_queue),
                             ("queue_timeout (s)", e.queue_timeout),
                             ("request_timeout (s)", e.request_timeout),
                             ("connect_timeout (s)", e.connect_timeout),
                             ("first_byte_timeout (s)", e.first_byte_timeout)) if v is not None]
        notes.append("endpoint limits: " + (", ".join(said) or "the gateway's"))
        if e.websocket is not None:
            w = e.websocket
            notes.append("WebSocket sessions: " + ", ".join(
                f"{k} {v:g}s" for k, v in (("idle timeout", w.idle_timeout),
                                           ("at most", w.max_session)) if v is not None))
        if e.retry is not None:
            r = e.retry
            which = "every method" if r.on_reset else "idempotent methods only (not POST)"
            notes.append(f"retries after a reset: {which}, {r.attempts} tries per request, "
                         f"at most {r.budget:g} of requests")
            if r.replay_buffer is not None:
                notes.append(f"request bodies up to {_size_text(r.replay_buffer)} are held for "
                             "a retry; larger ones stream to one replica and are never retried")
    p = spec.readiness
    if p is None:
        notes.append("no readiness probe: a replica takes traffic as soon as it runs (a "
                     "refused connection is retried on another replica); a rolling update "
                     "counts a new replica ready once its port accepts TCP connections")
    else:
        port = p.port if p.port is not None else "$PORT"
        notes.append(
            f"readiness: GET {p.path} on port {port} every {p.period_s:g}s (timeout "
            f"{p.timeout_s:g}s); traffic after {p.success_threshold} pass(es) in a row, none "
            f"after {p.failure_threshold} failure(s) in a row")
    return notes


def _auth_note(spec: WorkloadSpec) -> str:
    if spec.auth is None:
        return "endpoint: public (no auth section)"
    if spec.auth.token_secret is not None:
        return (f"endpoint: bearer token, the value of secret {spec.auth.token_secret!r} "
                f"(queue {spec.queue}'s or a global one; checked at submission)")
    return "endpoint: bearer token (its SHA-256 in auth.token_sha256)"
