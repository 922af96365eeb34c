"""`notify`: webhooks a workload's state changes are posted to (issue 13).

    notify:
      - url: https://hooks.example.com/corral        # http or https, at most 2,048 characters
        events: [started, succeeded, failed]         # default: every event below but scheduled
        secret: ci-hook                              # optional: the HMAC-SHA256 signing key

Pure models and rules (pydantic only). What happens at run time: the outbox row written in the
transition's own transaction (`corral.store.webhooks`), the sender that posts, signs and retries
(`corral.control.webhooks`). Documented in docs/specs.md ("Notifications: notify").
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_EVENTS",
    "EVENTS",
    "MAX_HOOKS",
    "MAX_URL_CHARS",
    "NotifyEvent",
    "NotifySpec",
    "event_of",
]

MAX_HOOKS: Final = 8
MAX_URL_CHARS: Final = 2048
NotifyEvent = Literal["scheduled", "started", "succeeded", "failed", "preempted", "cancelled",
                      "requeued"]
#: event name -> the state a transition moves to (started: running; requeued: back to pending,
#: a restart after a failure or a preemption)
EVENTS: Final[dict[str, str]] = {
    "scheduled": "scheduled", "started": "running", "succeeded": "succeeded",
    "failed": "failed", "preempted": "preempted", "cancelled": "cancelled",
    "requeued": "pending",
}
_BY_STATE: Final = {state: event for event, state in EVENTS.items()}
#: scheduled is left out: a placement that waits for devices is noise to a chat channel
DEFAULT_EVENTS: Final[tuple[NotifyEvent, ...]] = ("started", "succeeded", "failed", "preempted", "cancelled", "requeued")
_SECRET_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")


def event_of(to_state: str) -> str | None:
    """The notify event a transition to `to_state` is (None: a state no one subscribes to)."""
    return _BY_STATE.get(to_state)


class NotifySpec(BaseModel):
    """One webhook: a URL, the events posted to it, and the secret it is signed with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=MAX_URL_CHARS,
                     description="http:// or https:// URL a JSON body is POSTed to")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS), min_length=1, max_length=len(EVENTS),
        description="which state changes: scheduled, started, succeeded, failed, preempted, "
        "cancelled, requeued (default: all but scheduled)")
    secret: str | None = Field(
        None, description="a stored secret's name (`corral secrets ls`): the body is signed "
        "with HMAC-SHA256 under its value, header Corral-Signature: t=<unix>,v1=<hex>")
    timeout: float = Field(10.0, gt=0, le=30, strict=True, allow_inf_nan=False,
                           description="seconds one delivery may take (at most 30)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        check_url(v)
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("events lists an event twice: name each once")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        if v is not None and not _SECRET_NAME.fullmatch(v):
            raise ValueError("a secret's name is 1-63 lowercase letters, digits, '-', '_' or "
                             "'.': fix the name (`corral secrets ls` lists them)")
        return v


def check_url(url: str) -> None:
    """Raise ValueError saying what is wrong with a webhook URL and how to fix it."""
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ValueError("a URL holds no spaces or control characters: percent-encode them")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as e:
        raise ValueError(f"not a URL ({e}): give http(s)://host[:port]/path") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"scheme {parts.scheme or '(none)'!r} is not posted to: give an "
                         "http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("the URL names no host: give http(s)://host[:port]/path")
    if parts.username is not None or parts.password is not None:
        # it would be shown by describe and the API: a credential belongs in `secret`
        raise ValueError("the URL carries a user or password, which the API and describe "
                         "would show: drop it and sign the body with `secret` instead")
    if parts.fragment:
        raise ValueError("a fragment (#...) is never sent to the server: drop it")
    _ = port
    _check_host(parts.hostname)


#: instance-metadata addresses outside the link-local ranges (never_posted_to)
_METADATA: Final = frozenset({ipaddress.ip_address("fd00:ec2::254"),
                              ipaddress.ip_address("100.100.100.200")})


def _check_host(host: str) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not all(0 < len(p) <= 63 for p in host.rstrip(".").split(".")):
            raise ValueError(f"host {host[:80]!r} is not a valid name: labels of 1-63 "
                             "characters, 253 in all") from None
        return
    reason = never_posted_to(address)
    if reason:
        raise ValueError(f"{host} is {reason}: give the receiver's own address")


def never_posted_to(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why corral never posts a webhook to `address`, or "" where it may.

    Clouds serve instance metadata and credentials at link-local addresses (169.254.169.254
    on AWS, GCP and Azure; fe80::/10) and at a few others (AWS's IPv6 fd00:ec2::254,
    Alibaba's 100.100.100.200): a receiver never lives there, and a hook pointed there is a
    request forgery against the server's own host; no setting lifts this. Loopback and
    private addresses are the server's policy, not the spec's: refused unless the server
    allows their network (`corral.control.webhooks.refused_address`). The unspecified and
    multicast addresses name no receiver at all. The sender checks every address a name
    resolves to as well."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address in _METADATA:
        return "an instance-metadata or link-local address, never posted to"
    if address.is_unspecified or address.is_multicast:
        return "not the address of a receiver (unspecified or multicast)"
    return ""
