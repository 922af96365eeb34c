"""/v1/services/{id}: a service as one object over its replicas: get, scale within its bounds
(refusals name the field), cancel by the service id; members of other queues see nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock
from corral.control.endpoints import port_of
from corral.control.probes import TcpConnect
from corral.control.scaling import ScaleRefused, scale
from corral.store import Store
from corral.store import workloads as W
from corral.testing.replica_ports import ReplicaListeners

from .harness import Api, build

# probes reach 127.0.0.1:20000+seq, where another module's real replicas (test_service_e2e, the
# browser service pages) listen: with them on one worker
pytestmark = pytest.mark.xdist_group("replica-ports")


def service(**fields: Any) -> dict[str, Any]:
    return {"name": "chat", "queue": "team-a", "kind": "service", "gpus": 1, "cpu": 0.1,
            "memory": 64, "command": ["serve"], "replicas": 2, "min_replicas": 1,
            "max_replicas": 4, **fields}


@pytest.fixture
def api(store: Store) -> Iterator[Api]:
    built = build(store)
    yield built
    _LOOPS.pop(id(built), None)


_LOOPS: dict[int, tuple[ControlLoop, ManualClock]] = {}
_LISTENING: dict[int, ReplicaListeners] = {}


def run_loop(api: Api, steps: int = 3) -> None:
    """Step one control loop over the API's store and fake backend (one per test's Api: a
    second loop would wait for the first one's scheduler lease)."""
    if id(api) not in _LOOPS:
        clock = ManualClock()
        _LOOPS[id(api)] = (ControlLoop(api.store, api.backend, clock=clock,
                                       settings=ControlSettings(stop_grace_s=1.0),
                                       leadership=Leadership(api.store, ttl_s=15.0)), clock)
        _LOOPS[id(api)][0].probes.connect = _connect(api)
    loop, clock = _LOOPS[id(api)]
    for _ in range(steps):
        loop.step()
        clock.advance(1.0)


@contextlib.contextmanager
def listening(api: Api, *replica_ids: str) -> Iterator[None]:
    """Real TCP listeners for the replicas' ports (the fake backend's replicas open none), each
    on a kernel-given port that the api's loop probes in its place (corral.testing.replica_ports:
    the replica ports are the same in every test store, so other runs held them too)."""
    with ReplicaListeners() as listeners:
        for rid in replica_ids:
            with api.store.read() as c:
                rec = W.get_workload(c, rid)
            assert rec is not None
            listeners.open(port_of(rec))
        _LISTENING[id(api)] = listeners
        try:
            yield
        finally:
            del _LISTENING[id(api)]


def _connect(api: Api) -> TcpConnect:
    def connect(host: str, port: int, timeout_s: float) -> bool:
        listeners = _LISTENING.get(id(api))
        return listeners is not None and listeners.connect(host, port, timeout_s)
    return connect


def submit(api: Api, **fields: Any) -> str:
    r = api.client.post("/v1/workloads", json=service(**fields), headers=api.ann)
    assert r.status_code == 201, r.text
    return str(r.json()["group_id"])


def get(api: Api, sid: str) -> dict[str, Any]:
    r = api.client.get(f"/v1/services/{sid}", headers=api.ann)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_service_is_one_object_with_its_replicas(api: Api) -> None:
    sid = submit(api)
    s = get(api, sid)
    assert (s["state"], s["desired"], s["ready"], s["starting"]) == ("starting", 2, 0, 2)
    run_loop(api)
    s = get(api, sid)
    assert (s["state"], s["desired"], s["ready"]) == ("serving", 2, 2)
    assert [(r["id"], r["state"]) for r in s["replicas"]] == [
        (f"{sid}-r0", "ready"), (f"{sid}-r1", "ready")]
    assert all(r["node_id"] in ("n0", "n1") for r in s["replicas"])
    assert all(r["url"].startswith("http://127.0.0.1:") for r in s["replicas"])
    assert (s["min_replicas"], s["max_replicas"]) == (1, 4)


def test_scale_up_adds_replicas_and_down_drains_the_highest_first(api: Api) -> None:
    sid = submit(api)
    run_loop(api)
    r = api.client.post(f"/v1/services/{sid}/scale", json={"replicas": 3}, headers=api.ann)
    assert r.status_code == 200, r.text
    assert (r.json()["desired"], r.json()["starting"]) == (3, 1)
    run_loop(api)
    assert (get(api, sid)["ready"]) == 3
    r = api.client.post(f"/v1/services/{sid}/scale", json={"replicas": 1}, headers=api.ann)
    assert r.status_code == 200, r.text
    states = {x["index"]: x["state"] for x in r.json()["replicas"]}
    assert states == {0: "ready", 1: "draining", 2: "draining"}
    run_loop(api)
    s = get(api, sid)
    assert (s["desired"], s["ready"], s["draining"], s["state"]) == (1, 1, 0, "serving")
    ended = {x["index"]: (x["workload_state"], x["reason_code"]) for x in s["replicas"]}
    assert ended[2] == ("cancelled", "ScaledDown")
    r = api.client.post(f"/v1/services/{sid}/scale", json={"replicas": 2}, headers=api.ann)
    assert [x["index"] for x in r.json()["replicas"] if x["state"] != "ended"] == [0, 3]


@pytest.mark.parametrize(("replicas", "field", "words"), [
    (5, "replicas", "max_replicas"),
    (0, "replicas", "min_replicas"),
], ids=["above-max", "below-min"])
def test_scale_outside_the_bounds_is_refused_naming_the_field(
        api: Api, replicas: int, field: str, words: str) -> None:
    sid = submit(api)
    before = api.rows()
    r = api.client.post(f"/v1/services/{sid}/scale", json={"replicas": replicas},
                        headers=api.ann)
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0]["field"] == field
    assert words in r.json()["message"] and "between 1 and 4" in r.json()["message"]
    assert api.rows() == before


@pytest.mark.parametrize("body", [{"replicas": "3"}, {"replicas": -1}, {}, {"count": 2}],
                         ids=["string", "negative", "missing", "unknown-field"])
def test_a_malformed_scale_is_a_422(api: Api, body: dict[str, Any]) -> None:
    sid = submit(api)
    r = api.client.post(f"/v1/services/{sid}/scale", json=body, headers=api.ann)
    assert r.status_code == 422, r.text


def test_cancel_by_the_service_id_ends_every_replica(api: Api) -> None:
    sid = submit(api)
    run_loop(api)
    r = api.client.post(f"/v1/services/{sid}/cancel", headers=api.ann)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopping"
    run_loop(api)
    s = get(api, sid)
    assert s["state"] == "ended"
    assert {x["workload_state"] for x in s["replicas"]} == {"cancelled"}
    r = api.client.post(f"/v1/services/{sid}/scale", json={"replicas": 2}, headers=api.ann)
    assert r.status_code == 409 and "submit it again" in r.json()["message"]


def test_unknown_ids_jobs_and_other_queues_are_404(api: Api) -> None:
    assert api.client.get("/v1/services/nope-1234", headers=api.ann).status_code == 404
    job = api.client.post("/v1/workloads", headers=api.ann, json={
        "name": "train", "queue": "team-a", "gpus": 1, "command": ["t"]}).json()["group_id"]
    assert api.client.get(f"/v1/services/{job}", headers=api.ann).status_code == 404
    r = api.client.post("/v1/workloads", json=service(queue="team-b"), headers=api.admin)
    other = r.json()["group_id"]
    assert api.client.get(f"/v1/services/{other}", headers=api.ann).status_code == 404
    r = api.client.post(f"/v1/services/{other}/scale", json={"replicas": 3}, headers=api.ann)
    assert r.status_code == 404


@pytest.mark.parametrize(("fields", "where"), [
    ({"readiness": {"path": "health"}}, "readiness.path"),
    ({"readiness": {"path": "/h", "period_s": 0}}, "readiness.period_s"),
    ({"readiness": {"path": "/h", "failure_threshold": 0}}, "readiness.failure_threshold"),
    ({"readiness": {"path": "/h", "port": 70000}}, "readiness.port"),
    ({"readiness": {"path": "/h", "every": 3}}, "readiness.every"),
    ({"env": {"PORT": "8080"}}, "PORT"),
    ({"liveness": {"path": "/h", "initial_delay_s": -1}}, "liveness.initial_delay_s"),
    ({"kind": "job", "replicas": None, "min_replicas": None, "max_replicas": None,
      "readiness": {"path": "/h"}}, "service only"),
], ids=["path-relative", "period-zero", "threshold-zero", "port-range", "unknown-field",
        "env-port", "liveness-delay", "job"])
def test_a_bad_readiness_probe_is_refused_naming_it(
        api: Api, fields: dict[str, Any], where: str) -> None:
    body = {k: v for k, v in service(**fields).items() if v is not None}
    r = api.client.post("/v1/workloads", json=body, headers=api.ann)
    assert r.status_code == 422, r.text
    assert where in r.text


def test_a_readiness_probe_is_accepted_and_kept(api: Api) -> None:
    sid = submit(api, readiness={"path": "/health", "period_s": "2s"})
    assert get(api, sid)["spec"]["readiness"] == {"path": "/health", "period_s": 2.0}


def test_update_rolls_out_a_new_spec_and_refuses_what_is_not_an_update(api: Api) -> None:
    sid = submit(api)
    run_loop(api)
    r = api.client.post(f"/v1/services/{sid}/update", json=service(queue="team-b"),
                        headers=api.ann)
    assert r.status_code in (403, 422), r.text  # not ann's queue, or not this service's
    r = api.client.post(f"/v1/services/{sid}/update", json=service(), headers=api.ann)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "spec"
    r = api.client.post(f"/v1/services/{sid}/update", json=service(command=["serve", "v2"]),
                        headers=api.ann)
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["replicas"]] == [0, 1, 2, 3]
    r = api.client.post(f"/v1/services/{sid}/update", json=service(command=["serve", "v3"]),
                        headers=api.ann)
    assert r.status_code == 409
    with listening(api, f"{sid}-r2", f"{sid}-r3"):  # without a probe: once their ports accept
        run_loop(api, 5)
    s = get(api, sid)
    assert (s["desired"], s["ready"]) == (2, 2)
    assert {x["index"] for x in s["replicas"] if x["state"] == "ready"} == {2, 3}


def test_a_service_says_its_replica_hours_and_cost(api: Api) -> None:
    sid = submit(api)
    assert (get(api, sid)["replica_hours"], get(api, sid)["gpu_hours"]) == (0.0, "0")
    run_loop(api, steps=4)
    api.client.post(f"/v1/services/{sid}/cancel", headers=api.ann)
    run_loop(api, steps=3)
    s = get(api, sid)
    assert s["state"] == "ended"
    # two replicas, each launched and ended a few loop seconds later (the manual clock)
    assert 2 * 3 / 3600 <= s["replica_hours"] <= 2 * 10 / 3600
    assert float(s["gpu_hours"]) >= 0 and s["cost"]


def test_cancelling_a_service_at_zero_ends_it(api: Api) -> None:
    sid = submit(api, min_replicas=0, max_replicas=3, replicas=1,
                 autoscale={"target_in_flight": 4})
    run_loop(api)
    scale(api.store, sid, 0, 0.0, "autoscaler")  # as its autoscaler does after an idle spell
    run_loop(api)
    assert get(api, sid)["state"] == "idle"
    r = api.client.post(f"/v1/services/{sid}/cancel", headers=api.ann)
    assert r.status_code == 200 and r.json()["state"] == "ended"
    assert get(api, sid)["events"][-1]["reason"] == "Cancelled"
    with pytest.raises(ScaleRefused) as refused:  # nothing brings it back: not its autoscaler
        scale(api.store, sid, 1, 0.0, "autoscaler")
    assert refused.value.field == "service"
