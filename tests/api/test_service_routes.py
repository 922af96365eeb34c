"""apply_routes: the gateway's route table made to hold exactly the loop's replica routes, by
service id and (while unique) by name."""

from __future__ import annotations

from corral.api.service_routes import apply_routes
from corral.control.endpoints import Route
from corral.gateway import ReplicaState, RouteTable


def table_of(table: RouteTable) -> dict[str, dict[str, tuple[str, str]]]:
    return {s.name: {r.id: (r.url, str(r.state)) for r in s.replicas.values()}
            for s in table.services()}


A0 = Route("chat-aaaa", "chat-aaaa-r0", "http://127.0.0.1:20001", "ready", "chat")
A1 = Route("chat-aaaa", "chat-aaaa-r1", "http://127.0.0.1:20002", "starting", "chat")
B0 = Route("chat-bbbb", "chat-bbbb-r0", "http://127.0.0.1:20003", "ready", "chat")


def test_routes_by_id_and_by_unique_name() -> None:
    t = RouteTable()
    apply_routes(t, [A0, A1])
    want = {"chat-aaaa-r0": (A0.url, "ready"), "chat-aaaa-r1": (A1.url, "starting")}
    assert table_of(t) == {"chat-aaaa": want, "chat": want}


def test_a_second_service_of_the_same_name_takes_the_name_away() -> None:
    t = RouteTable()
    apply_routes(t, [A0])
    apply_routes(t, [A0, B0])
    assert set(table_of(t)) == {"chat-aaaa", "chat-bbbb"}


def test_states_urls_and_departures_follow_the_loop() -> None:
    t = RouteTable()
    apply_routes(t, [A0, A1])
    replica = t.replica("chat-aaaa", "chat-aaaa-r0")
    assert replica is not None
    apply_routes(t, [Route(A0.service, A0.replica, A0.url, "draining", A0.name)])
    assert t.replica("chat-aaaa", "chat-aaaa-r0") is replica  # its in-flight count is kept
    assert replica.state is ReplicaState.DRAINING
    assert t.replica("chat-aaaa", "chat-aaaa-r1") is None
    apply_routes(t, [])
    assert table_of(t) == {}
