"""The spot interruption warning, read on the host from the EC2 instance metadata service.

EC2 announces that it takes a spot instance back two minutes ahead, on the instance itself:

    PUT  <base>/latest/api/token                       X-aws-ec2-metadata-token-ttl-seconds: N
         -> a session token (IMDSv2; IMDSv1 may be switched off on the instance)
    GET  <base>/latest/meta-data/spot/instance-action  X-aws-ec2-metadata-token: <token>
         -> 404 while nothing is planned
         -> 200 {"action": "terminate" | "stop" | "hibernate", "time": "2026-12-03T12:22:00Z"}

(AWS user guide, "Spot Instance interruption notices"; the base is http://169.254.169.254.)
The agent polls it (`--spot-notice-url`; the aws provider's user-data turns it on for spot
instances) and reports the first notice to the control plane (`POST /agent/v1/notice`), which
cordons the node and stops its work with the preemption contract, as for a notice the provider's
API gave (`corral.control.autoscale`). Reading it on the host matters because the host sees it
first: the provider's API is read once per autoscaler pass (30 s), and a host may have no
provider corral can ask at all (an agent started by hand on a spot VM).

A 401 means the token expired: one new token, one retry. Anything else that is not a notice
(the service unreachable, a 5xx, a body that is not the documented JSON) is "no notice yet",
logged once: a broken metadata service must never stop the agent or its workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ACTION_PATH", "TOKEN_PATH", "NoticeIn", "NoticeOut", "SpotNotice", "SpotReporter",
           "SpotWatcher"]

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
ACTION_PATH = "/latest/meta-data/spot/instance-action"
_TOKEN_TTL_S = 21_600  # the most IMDSv2 allows: six hours


@dataclass(frozen=True)
class SpotNotice:
    action: str  # terminate, stop or hibernate
    time: str  # when EC2 acts, as it wrote it (UTC, ISO 8601)
    seconds_left: float  # from the host's clock at the time it was read (clocks differ)


class SpotWatcher:
    """Polls the instance-action document; `poll` returns a notice once, then None."""

    def __init__(self, base_url: str, *, interval_s: float = 5.0, timeout_s: float = 1.0,
                 client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.interval_s = interval_s
        self._http = client or httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._token: str | None = None
        self._last_at: float | None = None
        self._warned = False
        self.notice: SpotNotice | None = None  # the one seen (and reported or to report)

    def close(self) -> None:
        self._http.close()

    def poll(self, now: float, wall_now: datetime) -> SpotNotice | None:
        """A new notice when one appeared since the last poll (at most every `interval_s`)."""
        if self.notice is not None:
            return None
        if self._last_at is not None and now - self._last_at < self.interval_s:
            return None
        self._last_at = now
        try:
            body = self._action()
            notice = None if body is None else _parse(body, wall_now)
        except (httpx.HTTPError, ValueError) as e:
            if not self._warned:
                log.warning("spot notices: instance metadata at %s not readable (%s); "
                            "trying again every %g s", self.base_url, e, self.interval_s)
                self._warned = True
            return None
        self.notice = notice
        return notice

    def _action(self) -> str | None:
        for _ in range(2):
            token = self._token or self._new_token()
            r = self._http.get(ACTION_PATH, headers={"X-aws-ec2-metadata-token": token})
            if r.status_code == 401:  # the token expired: one new one
                self._token = None
                continue
            if r.status_code == 404:
                return None
            r.raise_for_status()
            return r.text
        raise ValueError("the metadata service refused two fresh tokens (401)")

    def _new_token(self) -> str:
        r = self._http.put(TOKEN_PATH,
                           headers={"X-aws-ec2-metadata-token-ttl-seconds": str(_TOKEN_TTL_S)})
        r.raise_for_status()
        self._token = r.text.strip()
        return self._token


def _parse(body: str, wall_now: datetime) -> SpotNotice:
    """The documented JSON; raises ValueError when it is not (a bad time too)."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("action"), str) \
            or not isinstance(doc.get("time"), str):
        raise ValueError(f"not an instance-action document: {body[:200]!r}")
    when = datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    return SpotNotice(doc["action"], doc["time"],
                      max(0.0, (when - wall_now).total_seconds()))


# -- the wire: agent -> control plane ---------------------------------------------------------
class NoticeIn(BaseModel):
    """POST /agent/v1/notice: a spot interruption notice the agent read on its host."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=r"^(terminate|stop|hibernate)$")
    time: str = Field(max_length=64, description="when EC2 acts, as the metadata wrote it")
    seconds_left: float = Field(ge=0, le=86_400, allow_inf_nan=False,
                                description="from the host's clock when it read the notice")


class NoticeOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_id: str
    cordoned: bool
    stopped: list[str]


class SpotReporter:
    """The agent's side: poll the watcher each turn, send the notice until the server took it.

    `send` is `AgentClient.notice` bound to the node's credential; a failed send (server away)
    is tried again next turn, with the seconds left counted down on the agent's clock."""

    def __init__(self, watcher: SpotWatcher, send: Callable[[NoticeIn], object],
                 retry_on: tuple[type[Exception], ...]) -> None:
        self.watcher = watcher
        self.send = send
        self.retry_on = retry_on  # the client's Unreachable and Refused
        self.pending: tuple[SpotNotice, float] | None = None  # the notice, when it was read
        self.sent = False

    def turn(self, now: float, wall_now: datetime) -> bool:
        """True once the notice reached the control plane (this turn)."""
        if self.sent:
            return False
        seen = self.watcher.poll(now, wall_now)
        if seen is not None:
            self.pending = (seen, now)
            log.warning("spot interruption notice on this host: %s at %s (%.0f s left)",
                        seen.action, seen.time, seen.seconds_left)
        if self.pending is None:
            return False
        n, read_at = self.pending
        left = max(0.0, n.seconds_left - (now - read_at))
        try:
            self.send(NoticeIn(action=n.action, time=n.time, seconds_left=left))
        except self.retry_on as e:
            log.warning("spot notice not delivered yet (%s); trying again", e)
            return False
        self.sent = True
        return True
