"""Webhooks (`notify`): which deliveries a transition owes, what they carry, how they are signed.

    lifecycle.transition(_many) ──> owe(...) ──> webhook_deliveries (same transaction)
                                                      │
                          webhook_sender.WebhookSender┘ claims, POSTs, retries (outside any txn)

A transition of a workload whose spec has `notify` adds one outbox row per hook subscribed to
the event, in the transition's own transaction (`corral.store.webhooks`): the notification is
owed exactly when the change is committed. Nothing here touches the network, so a slow or
failing URL can never hold a control-loop step; the step pays one INSERT, and only for
workloads that asked for webhooks.

The signature follows Stripe's scheme (https://stripe.com/docs/webhooks/signatures): header
`Corral-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; the timestamp
inside the signed text lets a receiver refuse a replayed body (GitHub's X-Hub-Signature-256
signs the body alone). `Corral-Delivery` is the delivery's id, the same on every retry, for a
receiver to drop duplicates (delivery is at least once).

Where hooks may point (`refused_address`, `destination_problems`): never at an instance-metadata,
link-local, unspecified or multicast address (`corral.spec.notify.never_posted_to`, no setting
lifts it), and by default at no address that is not globally routable either: loopback,
RFC 1918 and ULA private ranges, carrier-grade NAT, `localhost`. On a shared server a hook is a
request the server makes on a tenant's behalf, and a private URL would reach the control plane's
own database, the cluster's internal services, or another tenant's worker (server-side request
forgery; OWASP's SSRF guidance and GitLab's "allow requests to the local network" setting, off
by default, draw the same line). Teams that post to internal hosts name those networks in the
server setting `CORRAL_WEBHOOK_ALLOW_CIDRS` (comma-separated CIDRs, e.g. `10.20.0.0/16,
127.0.0.1/32`). The same rule refuses a URL at submission (a literal address or a `localhost`
name; no DNS lookup there) and every address its host resolves to before each POST
(`corral.control.webhook_sender`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Connection

from corral.spec.notify import DEFAULT_EVENTS, event_of, never_posted_to
from corral.store import webhooks as WH
from corral.store.workloads import WorkloadRecord

__all__ = [
    "ALLOW_CIDRS_ENV",
    "SIGNATURE_HEADER",
    "Allowed",
    "allowed_from_env",
    "body_of",
    "destination_problems",
    "notify_notes",
    "owe",
    "parse_allowed",
    "refused_address",
    "secret_names",
    "sign",
    "verify",
]

SIGNATURE_HEADER: Final = "Corral-Signature"
DELIVERY_HEADER: Final = "Corral-Delivery"
EVENT_HEADER: Final = "Corral-Event"
DEFAULT_TIMEOUT_S: Final = 10.0
#: the server setting naming the private networks hooks may post to (module docstring)
ALLOW_CIDRS_ENV: Final = "CORRAL_WEBHOOK_ALLOW_CIDRS"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: the networks a server lets hooks post to although they are not globally routable
Allowed = tuple[Network, ...]


def owe(conn: Connection, moves: Iterable[tuple[WorkloadRecord, str]], to_state: str, *,
        reason: str, now: float) -> None:
    """Write the deliveries these transitions owe (records as they were before the move,
    each with its event's message), in the caller's transaction."""
    event = event_of(to_state)
    if event is None:
        return
    rows = [row for rec, message in moves if rec.spec.get("notify")
            for row in _rows(rec, message, event, to_state, reason, now)]
    WH.enqueue(conn, rows, now)


def _rows(rec: WorkloadRecord, message: str, event: str, to_state: str, reason: str,
          now: float) -> list[dict[str, Any]]:
    payload = {
        "event": event, "at": now, "from": rec.state, "to": to_state, "reason": reason,
        "message": message,
        "workload": {"id": rec.id, "name": rec.name, "group": rec.group_id, "queue": rec.queue,
                     "user": rec.user, "kind": rec.kind, "attempt": rec.attempt},
    }
    out = []
    for hook in rec.spec["notify"]:  # stored with defaults left out (stored_form)
        if event not in hook.get("events", DEFAULT_EVENTS):
            continue
        out.append({"workload_id": rec.id, "queue": rec.queue, "url": hook["url"],
                    "secret": hook.get("secret"), "event": event, "payload": payload,
                    "timeout_s": float(hook.get("timeout", DEFAULT_TIMEOUT_S))})
    return out


def body_of(payload: dict[str, Any], delivery_id: int) -> bytes:
    """The bytes POSTed (and signed): the payload with its delivery id, compact JSON."""
    return json.dumps({"id": delivery_id, **payload}, separators=(",", ":"),
                      sort_keys=True).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Corral-Signature` header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float, tolerance_s: float = 300.0
           ) -> bool:
    """What a receiver does (and what tests check): the header's v1 is the HMAC of
    "<t>.<body>" under the secret, compared in constant time, and t is recent."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.partition("=")
        fields.setdefault(key.strip(), []).append(value.strip())
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


def secret_names(hooks: Sequence[Any]) -> dict[str, str]:
    """`notify[i]` -> the secret hook i is signed with (for the submission's check)."""
    return {f"notify[{i}]": h.secret for i, h in enumerate(hooks) if h.secret}


def notify_notes(hooks: Sequence[Any]) -> list[str]:
    """What `notify` will do, in sentences (`corral submit --dry-run`)."""
    return [f"notify: POST {h.url} on {', '.join(h.events)}"
            + (f", signed with secret {h.secret!r} (Corral-Signature)" if h.secret else
               ", unsigned") + f"; retried with backoff, at most {h.timeout:g}s each; "
            "`corral deliveries ID` shows the log" for h in hooks]


# -- where hooks may point ----------------------------------------------------------------

def parse_allowed(text: str) -> Allowed:
    """`CORRAL_WEBHOOK_ALLOW_CIDRS`'s value: comma-separated networks ("" : none). Raises
    ValueError naming the setting and the entry that is not a network."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{ALLOW_CIDRS_ENV}: {item!r} is not a network: give CIDRs "
                             "such as 10.20.0.0/16 or 127.0.0.1/32, comma-separated") from None
    return tuple(out)


def allowed_from_env() -> Allowed:
    """The server's setting (`corral up` reads it once at start)."""
    return parse_allowed(os.environ.get(ALLOW_CIDRS_ENV, ""))


def refused_address(address: Address, allowed: Allowed = ()) -> str:
    """Why a hook must not be posted to `address`, or "" where it may: never to metadata and
    the like (whatever `allowed` says); to a private or loopback address only inside
    `allowed`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    reason = never_posted_to(address)
    if reason or address.is_global:
        return reason
    if any(address.version == net.version and address in net for net in allowed):
        return ""
    return (f"a private or loopback address, which this server does not post to (request "
            f"forgery on a shared server): give the receiver's public URL, or ask the "
            f"server's admin to allow its network in {ALLOW_CIDRS_ENV}")


def destination_problems(hooks: Sequence[Any], allowed: Allowed = ()) -> list[tuple[str, str]]:
    """(`notify[i].url`, why) for each hook whose URL names a refused address or a
    `localhost` name (RFC 6761: always loopback), for the submission's check. Other names are
    not resolved here (no DNS on the submission path); the sender checks what they resolve
    to before each POST."""
    problems = []
    for i, hook in enumerate(hooks):
        host = (urlsplit(hook.url).hostname or "").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            address: Address = ipaddress.ip_address("127.0.0.1")
        else:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
        reason = refused_address(address, allowed)
        if reason:
            problems.append((f"notify[{i}].url", f"{host} is {reason}"))
    return problems
