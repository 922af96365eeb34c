"""Which failed tries go to another replica, and how many retries a service may spend.

A try is sent again only when the client has received nothing yet (the failure came before the
replica's response headers) and the request can be sent again byte for byte (its body, if any,
is still held in the replay buffer). Three failures qualify:

- **connect**: the replica refused the connection or did not accept it in time; it never saw
  the request. Retried for every method (unless `retry_unsent_non_idempotent` is off).
- **reset**: the connection broke before a response came (the replica was killed mid-request,
  or closed a kept-alive connection as the request went out); the replica may have run part of
  the request. Retried for idempotent methods, and for the others where the service's
  `RetryPolicy.on_reset` allows it (Envoy's `retry_on: reset,connect-failure`; Knative's
  activator retries a request whose revision pod went away the same way).
- **503 before any body**, for an idempotent request: the replica refused the work.

A reset retry may run the work twice, so it is bounded twice: per request (`attempts`) and per
service by a `RetryBudget` (Finagle's RetryBudget, Envoy's `retry_budget`): a crash loop that
resets every request cannot double the load on the replicas that are left.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["IDEMPOTENT", "Failure", "RetryBudget", "RetryPolicy", "Skip", "retry_skip"]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class Failure(StrEnum):
    CONNECT = "connect"          # never reached the replica
    RESET = "reset"              # the connection broke before any response header
    UNAVAILABLE = "unavailable"  # the replica answered 503 before any body


class Skip(StrEnum):
    """Why a failed try was not retried (the `reason` of corral_gateway_retries_skipped_total
    and the X-Corral-Retry-Skipped header of the error the client gets)."""

    POLICY = "policy"                  # the method and failure are not retried for this service
    BODY_OVER_LIMIT = "body_over_limit"  # the body outgrew the replay buffer: cannot resend it
    ATTEMPTS = "attempts"              # the request used its tries
    BUDGET = "budget"                  # the service's retry budget is spent
    NO_REPLICA = "no_replica"          # no other ready replica to try


@dataclass(frozen=True)
class RetryPolicy:
    """A service's retries after a reset (its spec's `endpoint.retry`).

    on_reset: retry a POST/PATCH whose connection broke before any response. On by default:
    a service is an inference endpoint, where running a completion twice costs GPU time and
    nothing else, and a client that loses it to a killed replica would send it again anyway.
    A service whose POSTs have effects (writes, payments) turns it off.
    attempts: tries of a request whose tries end in resets, the first included (2: one retry,
    so a request that kills the replica it runs on, a "query of death", takes down at most two).
    budget: reset retries per service, as a fraction of its requests over the budget's window
    (above a small reserve): 0.2 is Envoy's and Finagle's default.
    """

    on_reset: bool = True
    attempts: int = 2
    budget: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 10:
            raise ValueError("attempts must be from 1 to 10")
        if not 0 <= self.budget <= 1:
            raise ValueError("budget must be from 0 to 1")


def retry_skip(method: str, failure: Failure, *, replayable: bool, has_body: bool,
               policy: RetryPolicy, unsent_non_idempotent: bool = True) -> Skip | None:
    """None when a try that failed with `failure` may go to another replica (the caller then
    checks the request's tries and the service's budget); else why not. `replayable`: the
    request's body (if any) is still held whole, so it can be sent again."""
    idempotent = method in IDEMPOTENT
    if failure is Failure.CONNECT:
        allowed = idempotent or unsent_non_idempotent
    elif failure is Failure.RESET:
        allowed = idempotent or policy.on_reset
    else:  # a 503: the replica answered; only an idempotent request is sent elsewhere
        allowed = idempotent
    if not allowed:
        return Skip.POLICY
    if has_body and not replayable:
        return Skip.BODY_OVER_LIMIT
    return None


class RetryBudget:
    """Retries allowed per service over a sliding window: `ratio` of the requests seen in the
    last `window_s` seconds, plus `reserve` (so a quiet service can still retry its one failed
    request). Time is passed in (the event loop's clock); counts are kept per whole second, so
    memory stays `window_s` buckets whatever the traffic.

    Worked example (ratio 0.2, reserve 10, window 10 s): 1,000 requests in the last 10 s allow
    10 + 200 = 210 retries; a replica crash-looping under all of them adds at most 21% load.
    """

    def __init__(self, ratio: float, reserve: int = 10, window_s: int = 10) -> None:
        self.ratio, self.reserve, self.window_s = ratio, reserve, window_s
        #: [second, requests, retries], oldest first
        self._buckets: deque[list[int]] = deque()

    def _bucket(self, now: float) -> list[int]:
        second = int(now)
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def request(self, now: float) -> None:
        self._bucket(now)[1] += 1

    def try_retry(self, now: float) -> bool:
        """Spend one retry if the budget has one; False (nothing spent) when it is used up."""
        bucket = self._bucket(now)
        requests = sum(b[1] for b in self._buckets)
        retries = sum(b[2] for b in self._buckets)
        if retries >= self.reserve + self.ratio * requests:
            return False
        bucket[2] += 1
        return True
