"""What one client may ask of the API: body and spec sizes, request rate, read timeouts.

    limit                       default    env (corral up reads it)           over it
    request body                1 MiB      CORRAL_API_MAX_BODY_BYTES          413, unread
    spec (POST /v1/workloads,   256 KiB    CORRAL_API_MAX_SPEC_BYTES          413, field `spec`
      /v1/dry-run body)
    requests per token          50/s,      CORRAL_API_RATE_PER_S (0: off),    429 + Retry-After
                                burst 200  CORRAL_API_BURST; per token:
                                           `corral tokens create --rate`
    body read time              30 s       CORRAL_API_BODY_TIMEOUT_S          408, connection closed
    request headers read time   10 s       CORRAL_API_HEADER_TIMEOUT_S        connection closed
    idle keep-alive             5 s        CORRAL_API_KEEP_ALIVE_S            connection closed
    shell (`corral ssh`) idle   1 h        CORRAL_API_SHELL_IDLE_S (0: off)   closed, 4408 + reason
    shell's longest session     12 h       CORRAL_API_SHELL_MAX_S (0: off)    closed, 4408 + reason
    port-forward connection     4 h idle,  CORRAL_API_FORWARD_IDLE_S,         closed, 4408 + reason
      (each TCP connection)     12 h       CORRAL_API_FORWARD_MAX_S

The rate is a token bucket per API token, in memory, per process: `burst` requests at once, then
`rate_per_s` on average. Several API replicas each allow the rate (the limit is per process).
The bucket is sans-io (`TokenBuckets.take` is given `now`), so it is tested without a clock.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["ApiLimits", "TokenBuckets"]


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_body_bytes: int = 1 << 20
    max_spec_bytes: int = 256 << 10
    rate_per_s: float = 50.0
    burst: int = 200
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    #: interactive streams (`corral.api.websockets.SessionClock`; issue 13): idle is no byte
    #: either way; 0 turns a limit off
    shell_idle_s: float = 3600.0
    shell_max_s: float = 12 * 3600.0
    forward_idle_s: float = 4 * 3600.0
    forward_max_s: float = 12 * 3600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"API limit {f.name} must be a finite number >= 0, not {value!r}")
        if self.rate_per_s > 0 and self.burst < 1:
            raise ValueError("API limit burst must be at least 1 when rate_per_s is set")
        if self.max_spec_bytes > self.max_body_bytes:
            raise ValueError("max_spec_bytes cannot exceed max_body_bytes (a spec is a body)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiLimits:
        """The defaults, each overridden by CORRAL_API_<NAME> when set (see the module doc)."""
        env = os.environ if env is None else env
        given: dict[str, int | float] = {}
        for f in fields(cls):
            name = f"CORRAL_API_{f.name.upper()}"
            if name not in env:
                continue
            kind = int if f.type in ("int", int) else float
            try:
                given[f.name] = kind(env[name])
            except ValueError:
                raise ValueError(f"{name}={env[name]!r} is not a number ({kind.__name__})") from None
        return cls(**given)  # type: ignore[arg-type]


class TokenBuckets:
    """One token bucket per key (an API token's id). `take` spends one request.

    Worked example, rate 2/s, burst 3: at t=0 three requests pass and a fourth waits 0.5 s
    (`take` returns 0.5); at t=0.5 one more passes. Buckets unused for a while are forgotten
    (at most `max_keys` are kept, least recently used first out), which only ever refills them.
    Not thread-safe: the API's event loop is its one caller.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()

    def take(self, key: object, now: float, rate: float, burst: int) -> float:
        """0.0 when the request may go on (one unit spent), else the seconds until it may."""
        if rate <= 0:  # no limit for this key
            return 0.0
        level, last = self._buckets.pop(key, (float(burst), now))
        level = min(float(burst), level + max(now - last, 0.0) * rate)
        if level >= 1.0:
            self._remember(key, level - 1.0, now)
            return 0.0
        self._remember(key, level, now)
        return (1.0 - level) / rate

    def _remember(self, key: object, level: float, now: float) -> None:
        self._buckets[key] = (level, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
