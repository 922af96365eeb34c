"""Webhooks (`notify`): the outbox row is committed with the transition, and the sender posts
it to real local HTTP servers, signed, retried with backoff, and isolated: a slow or failing
endpoint holds at most its own slots while another origin's deliveries go through."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from corral.control import lifecycle as L
from corral.control.lifecycle import State
from corral.control.webhook_sender import SenderSettings, WebhookSender
from corral.control.webhooks import ALLOW_CIDRS_ENV, SIGNATURE_HEADER, parse_allowed, verify
from corral.spec import SpecError, WorkloadSpec
from corral.store import Store
from corral.store import secrets as S
from corral.store import webhooks as WH
from corral.store import workloads as W
from corral.testing.webhook_receiver import Receiver

from .rig import Rig

SECRET = "whsec-3f9a7c"
LOOPBACK = parse_allowed("127.0.0.0/8")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def rig(store: Store, tmp_path: Path) -> Rig:
    store.secret_box = S.SecretBox.load(tmp_path)
    rig = Rig(store)
    rig.submissions.webhook_allowed = LOOPBACK  # the receivers here listen on 127.0.0.1
    with store.write() as c:
        S.put_secret(c, store.secret_box, "hook", SECRET, queue="q", by="root", now=0.0)
    return rig


def _sender(rig: Rig, **settings: Any) -> WebhookSender:
    return WebhookSender(rig.store, clock=rig.clock.now,
                         settings=SenderSettings(**{"poll_s": 0.01, "allowed": LOOPBACK,
                                                    **settings}))


def _round(sender: WebhookSender) -> int:
    async def go() -> int:
        n = await sender.tick()
        await sender.drain()
        await sender.aclose()
        return n
    return asyncio.run(go())


def _log(rig: Rig, wid: str) -> list[WH.Delivery]:
    with rig.store.read() as c:
        return WH.deliveries_of(c, [wid])


# -- the spec ----------------------------------------------------------------------------

@pytest.mark.parametrize(("hook", "field", "says"), [
    ({"url": "ftp://h/x"}, "url", "http:// or https://"),
    ({"url": "hooks.example.com/x"}, "url", "http:// or https://"),
    ({"url": "https:///x"}, "url", "names no host"),
    ({"url": "https://u:pw@h.example/x"}, "url", "user or password"),
    ({"url": "https://h.example/a b"}, "url", "no spaces"),
    ({"url": "https://h.example:99999/"}, "url", "not a URL"),
    ({"url": "https://h.example/" + "a" * 2100}, "url", "2048"),
    ({"url": "https://h.example/", "events": ["finished"]}, "events", "succeeded"),
    ({"url": "https://h.example/", "events": ["failed", "failed"]}, "events", "twice"),
    ({"url": "https://h.example/", "events": []}, "events", "at least 1"),
    ({"url": "https://h.example/", "secret": "Bad Name"}, "secret", "lowercase"),
    ({"url": "https://h.example/", "timeout": 120}, "timeout", "30"),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, "url", "instance-metadata"),
    ({"url": "http://[fd00:ec2::254]/latest/"}, "url", "instance-metadata"),
    ({"url": "http://[::ffff:169.254.169.254]/"}, "url", "instance-metadata"),
    ({"url": "http://0.0.0.0:8080/"}, "url", "not the address of a receiver"),
], ids=["ftp", "no-scheme", "no-host", "userinfo", "space", "port", "long", "unknown-event",
        "dup-event", "no-events", "secret-name", "timeout", "metadata-v4", "metadata-v6",
        "metadata-mapped", "unspecified"])
def test_a_bad_hook_is_refused_naming_its_field(hook: dict[str, Any], field: str,
                                               says: str) -> None:
    with pytest.raises(ValidationError) as e:
        WorkloadSpec.model_validate({"name": "w", "queue": "q", "command": ["x"],
                                     "notify": [hook]})
    err = e.value.errors()[0]
    assert err["loc"][:3] == ("notify", 0, field)
    assert says in err["msg"]


def test_at_most_eight_hooks() -> None:
    with pytest.raises(ValidationError, match="at most 8"):
        WorkloadSpec.model_validate({"name": "w", "queue": "q", "command": ["x"],
                                     "notify": [{"url": f"https://h{i}.example/"}
                                                for i in range(9)]})


def test_a_secret_the_queue_cannot_use_is_refused_at_submission(rig: Rig) -> None:
    with pytest.raises(SpecError) as e:
        rig.submit(notify=[{"url": "https://h.example/", "secret": "nope"}])
    assert "notify[0].secret" in str(e.value) and "corral secrets set nope" in str(e.value)


# -- private and loopback targets (request forgery) ---------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/x", "http://localhost/x", "http://api.localhost./x",
    "http://10.1.2.3/x", "http://192.168.0.7/x", "http://172.16.0.1/x", "http://[::1]/x",
    "http://[fd12:3456::1]/x", "http://100.64.0.9/x", "http://[::ffff:10.0.0.1]/x",
], ids=["loopback", "localhost", "sub-localhost", "rfc1918-10", "rfc1918-192", "rfc1918-172",
        "loopback-v6", "ula", "cgnat", "mapped-private"])
def test_a_private_or_loopback_url_is_refused_by_default(store: Store, url: str) -> None:
    rig = Rig(store)  # a server without CORRAL_WEBHOOK_ALLOW_CIDRS
    with pytest.raises(SpecError) as e:
        rig.submit(notify=[{"url": "https://ok.example/"}, {"url": url}])
    said = str(e.value)
    assert "notify[1].url" in said and "private or loopback" in said
    assert ALLOW_CIDRS_ENV in said  # the fix: the setting an admin sets
    with rig.store.read() as c:
        assert W.list_workloads(c, limit=10) == []  # nothing stored


def test_the_server_setting_allows_the_networks_it_names_only(store: Store) -> None:
    rig = Rig(store)
    rig.submissions.webhook_allowed = parse_allowed(" 10.20.0.0/16 , 127.0.0.1/32,")
    rig.submit(notify=[{"url": "http://10.20.3.4:9000/hook"}, {"url": "http://localhost/h"}])
    with pytest.raises(SpecError, match=r"notify\[0\]\.url"):
        rig.submit(notify=[{"url": "http://10.21.0.1/hook"}])


def test_no_setting_lets_a_hook_reach_instance_metadata(store: Store) -> None:
    rig = Rig(store)
    rig.submissions.webhook_allowed = parse_allowed("0.0.0.0/0,::/0")
    with pytest.raises(ValidationError, match="instance-metadata"):
        rig.submit(notify=[{"url": "http://169.254.169.254/latest/"}])


def test_a_bad_allow_setting_names_the_setting_and_the_entry() -> None:
    with pytest.raises(ValueError, match=f"{ALLOW_CIDRS_ENV}: 'ten.0/8' is not a network"):
        parse_allowed("10.0.0.0/8,ten.0/8")


def test_a_name_resolving_to_a_private_address_is_not_posted_to(
        rig: Rig, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submitted as a public name; it resolves to the receiver on loopback now. A sender
    without the setting checks the resolved address and sends nothing; one that allows
    loopback delivers."""
    wid = rig.submit(notify=[{"url": receiver.url.replace("127.0.0.1", "hooks.example.com")
                              + "/hook", "events": ["started"]}])
    rig.step(2)

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]
    monkeypatch.setattr("corral.control.webhook_sender._resolve", loopback)
    _round(_sender(rig, allowed=()))
    (d,) = _log(rig, wid)
    assert (d.state, d.attempts) == ("failed", 1)
    assert "resolves to 127.0.0.1, a private or loopback address" in d.last_error
    assert "nothing was sent" in d.last_error and receiver.got == []


# -- the outbox --------------------------------------------------------------------------

def test_transitions_owe_deliveries_for_the_subscribed_events_only(rig: Rig) -> None:
    wid = rig.submit(notify=[{"url": "https://a.example/", "events": ["started", "succeeded"]},
                             {"url": "https://b.example/"}])
    rig.step(2)
    assert rig.state(wid) == "running"
    rig.backend.finish(wid)
    rig.step(2)
    assert rig.state(wid) == "succeeded"
    got = [(d.url, d.event, d.state) for d in _log(rig, wid)]
    assert got == [("https://a.example/", "started", "pending"),
                   ("https://b.example/", "started", "pending"),
                   ("https://a.example/", "succeeded", "pending"),
                   ("https://b.example/", "succeeded", "pending")]
    payload = _log(rig, wid)[0].payload
    assert payload["workload"]["id"] == wid and payload["to"] == "running"


def test_a_rolled_back_transition_owes_nothing(rig: Rig) -> None:
    wid = rig.submit(notify=[{"url": "https://a.example/", "events": ["cancelled"]}])
    with pytest.raises(RuntimeError), rig.store.write() as c:
        rec = W.get_workload(c, wid)
        assert rec is not None
        assert L.transition(c, rec, State.CANCELLED, reason=L.CANCELLED, message="x", now=1.0)
        raise RuntimeError("the step failed after the change")
    assert _log(rig, wid) == [] and rig.state(wid) == "pending"


def test_work_without_notify_writes_no_outbox_rows(rig: Rig) -> None:
    wid = rig.submit()
    rig.step(2)
    assert rig.state(wid) == "running" and _log(rig, wid) == []


# -- the sender, against real servers ----------------------------------------------------

def test_a_delivery_is_posted_signed_and_logged(rig: Rig, receiver: Receiver) -> None:
    wid = rig.submit(notify=[{"url": receiver.url + "/ok", "events": ["started"],
                              "secret": "hook"}])
    rig.step(2)
    assert _round(_sender(rig)) == 1
    (path, headers, body), = receiver.got
    assert path == "/ok"
    assert verify(SECRET, body, headers[SIGNATURE_HEADER], now=rig.clock.now())
    assert not verify("other", body, headers[SIGNATURE_HEADER], now=rig.clock.now())
    assert not verify(SECRET, body + b" ", headers[SIGNATURE_HEADER], now=rig.clock.now())
    sent = json.loads(body)
    assert sent["event"] == "started" and sent["workload"]["id"] == wid
    assert headers["Corral-Event"] == "started" and headers["Corral-Delivery"] == str(sent["id"])
    assert SECRET not in json.dumps(sent)
    (d,) = _log(rig, wid)
    assert (d.state, d.attempts, d.last_status) == ("delivered", 1, 200)
    assert _round(_sender(rig)) == 0  # delivered once, never again


def test_a_failing_url_is_retried_with_backoff_then_failed(rig: Rig,
                                                          receiver: Receiver) -> None:
    wid = rig.submit(notify=[{"url": receiver.url + "/fail", "events": ["started"]}])
    rig.step(2)
    sender = _sender(rig, max_attempts=3, base_backoff_s=10.0)
    waits = []
    for _ in range(3):
        assert _round(sender) == 1
        (d,) = _log(rig, wid)
        assert _round(sender) == 0  # not due again before its backoff
        waits.append(d.next_at - rig.clock.now())
        rig.clock.advance(max(d.next_at - rig.clock.now(), 0) + 0.1)
    (d,) = _log(rig, wid)
    assert (d.state, d.attempts, d.last_status) == ("failed", 3, 500)
    assert waits[:2] == [10.0, 20.0]  # 10 s, then doubled
    assert len(receiver.got) == 3


def test_a_name_resolving_to_instance_metadata_is_never_posted_to(
        rig: Rig, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name was fine at submission and points at the metadata address now (DNS changed):
    the sender checks what it resolves to before each POST and sends nothing."""
    wid = rig.submit(notify=[{"url": receiver.url + "/hook", "events": ["started"]}])
    rig.step(2)

    async def metadata(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "169.254.169.254"]
    monkeypatch.setattr("corral.control.webhook_sender._resolve", metadata)
    _round(_sender(rig))
    (d,) = _log(rig, wid)
    assert (d.state, d.attempts) == ("failed", 1)
    assert "169.254.169.254" in d.last_error and "nothing was sent" in d.last_error
    assert receiver.got == []


def test_a_refusing_url_fails_at_once(rig: Rig, receiver: Receiver) -> None:
    wid = rig.submit(notify=[{"url": receiver.url + "/gone", "events": ["started"]}])
    rig.step(2)
    _round(_sender(rig))
    (d,) = _log(rig, wid)
    assert (d.state, d.attempts, d.last_status) == ("failed", 1, 404)
    assert "not retried" in d.last_error


def test_a_slow_origin_holds_only_its_own_slots(rig: Rig) -> None:
    slow, fast = Receiver(slow_s=5.0), Receiver()
    try:
        hooks = [{"url": slow.url + "/slow", "events": ["started"], "timeout": 0.3}] * 4
        hooks += [{"url": fast.url + f"/ok{i}", "events": ["started"]} for i in range(3)]
        wid = rig.submit(notify=hooks)
        rig.step(2)
        started = _round(_sender(rig, concurrency=8, per_origin=3))
        log = _log(rig, wid)
    finally:
        slow.close()
        fast.close()
    assert started == 6  # 3 to the slow origin (its cap), all 3 to the other
    by_state = sorted((d.url.rsplit("/", 1)[1], d.state, d.attempts) for d in log)
    assert by_state == [("ok0", "delivered", 1), ("ok1", "delivered", 1),
                        ("ok2", "delivered", 1), ("slow", "pending", 0),
                        ("slow", "pending", 1), ("slow", "pending", 1), ("slow", "pending", 1)]
    assert all("timed out" in d.last_error for d in log if d.attempts and "slow" in d.url)


def test_pending_deliveries_beyond_the_cap_are_dropped_oldest_first(rig: Rig) -> None:
    wid = rig.submit(notify=[{"url": "http://127.0.0.1:9/x", "events": ["started"]}] * 5)
    rig.step(2)
    with rig.store.write() as c:
        assert WH.drop_over_cap(c, cap=2, now=rig.clock.now()) == 3
    states = [d.state for d in _log(rig, wid)]
    assert states == ["dropped"] * 3 + ["pending"] * 2


def test_the_sender_thread_delivers_and_stops(rig: Rig, receiver: Receiver) -> None:
    wid = rig.submit(notify=[{"url": receiver.url + "/ok", "events": ["started"]}])
    rig.step(2)
    stop = threading.Event()
    t = threading.Thread(target=_sender(rig).run, args=(stop,), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not receiver.got and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive()
    assert [d.state for d in _log(rig, wid)] == ["delivered"]


def test_the_example_is_valid() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    text = (root / "examples/notify.yaml").read_text()
    spec = WorkloadSpec.model_validate(yaml.safe_load(text))
    assert next(h.events for h in spec.notify) == ["started", "succeeded", "failed"]
