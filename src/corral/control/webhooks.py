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
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import Connection

from corral.spec.notify import DEFAULT_EVENTS, event_of
from corral.store import webhooks as WH
from corral.store.workloads import WorkloadRecord

__all__ = ["SIGNATURE_HEADER", "body_of", "notify_notes", "owe", "secret_names", "sign", "verify"]

SIGNATURE_HEADER: Final = "Corral-Signature"
DELIVERY_HEADER: Final = "Corral-Delivery"
EVENT_HEADER: Final = "Corral-Event"
DEFAULT_TIMEOUT_S: Final = 10.0


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
