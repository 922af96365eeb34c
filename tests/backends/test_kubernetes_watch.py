"""The Kubernetes backend's `poll_changes` from watches (corral.backends.kubernetes_watch), against
the in-memory API server behind the official client (its `kubernetes.watch.Watch` runs for real
on the fake's streamed events): a step reports only what moved, lists nothing when idle, and the
deltas add up to what a full `poll` lists, after random histories."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.backends import WorkerState, base
from corral.backends.base import WorkerStatus

from .conftest import make_spec

pytest.importorskip("kubernetes", reason="kubernetes is not installed: pip install -e '.[k8s]'")

from corral.backends.kubernetes import KubernetesBackend
from corral.backends.kubernetes_fake import FakeKubernetes
from corral.backends.kubernetes_objects import pod_name
from corral.backends.kubernetes_watch import Informer

Key = tuple[str, int]


@pytest.fixture
def fake() -> FakeKubernetes:
    k = FakeKubernetes()
    for name in ("gpu-a", "gpu-b"):
        k.add_node(name)
    return k


@pytest.fixture
def backend(fake: FakeKubernetes, tmp_path: Path):
    b = KubernetesBackend(tmp_path / "work", image="python:3.11-slim",
                          api_client=fake.api_client())
    yield b
    fake.close_watches()
    b.close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the watch did not catch up"
        time.sleep(0.01)


def caught_up(fake: FakeKubernetes, backend: KubernetesBackend) -> Callable[[], bool]:
    """Each watch has applied the server's last event of its kind."""
    def done() -> bool:
        for informer, part in ((backend._pods, "/pods"), (backend._nodes, "/nodes")):
            if informer is None or not informer.version:
                return False
            last = max((rv for rv, path, _ in fake.events if path.endswith(part)), default=0)
            if int(informer.version) < last:
                return False
        return True
    return done


def pod_lists(fake: FakeKubernetes) -> int:
    """GETs of the pod collection (lists and watches alike)."""
    return sum(1 for m, p, _ in fake.requests if m == "GET" and p.endswith("/pods"))


def by_key(statuses: list[WorkerStatus]) -> dict[Key, list[tuple]]:
    out: dict[Key, list[tuple]] = {}
    for s in statuses:
        out.setdefault((s.workload_id, s.attempt), []).append(
            (s.worker, s.state, s.reason, s.exit_code))
    return out


def test_a_step_reports_only_what_moved_and_an_idle_step_lists_nothing(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.launch(make_spec("w-one").on("gpu-a").build())
    backend.launch(make_spec("w-two").on("gpu-b").build())
    first, gone, everything = backend.poll_changes(time.time())
    assert everything and gone == []
    assert {s.workload_id for s in first} == {"w-one", "w-two"}

    fake.run(pod_name("w-one", 0, 0))
    wait_for(caught_up(fake, backend))
    changed, gone, everything = backend.poll_changes(time.time())
    assert not everything and gone == []
    assert [(s.workload_id, s.state) for s in changed] == [("w-one", WorkerState.RUNNING)]

    before, watches = pod_lists(fake), fake.watches
    assert backend.poll_changes(time.time()) == ([], [], False)
    assert backend.poll_changes(time.time()) == ([], [], False)
    assert pod_lists(fake) == before and fake.watches == watches  # idle: no request at all
    assert backend._pods is not None and backend._pods.lists == 1


def test_a_node_gone_not_ready_loses_only_its_workers(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.launch(make_spec("on-a").on("gpu-a").build())
    backend.launch(make_spec("on-b").on("gpu-b").build())
    for wid in ("on-a", "on-b"):
        fake.run(pod_name(wid, 0, 0))
    backend.poll_changes(time.time())
    wait_for(caught_up(fake, backend))
    backend.poll_changes(time.time())
    fake.set_ready("gpu-b", False)
    wait_for(caught_up(fake, backend))
    changed, _, _ = backend.poll_changes(time.time())
    assert [(s.workload_id, s.state, s.reason) for s in changed] == [
        ("on-b", WorkerState.LOST, base.NODE_LOST)]
    assert ("corral", pod_name("on-b", 0, 0)) not in fake.pods  # fenced


def test_a_pod_just_created_is_never_reported_gone(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    backend.poll_changes(time.time())  # the watches run
    for i in range(20):  # each launch is reported at once, whatever the watch has shown
        backend.launch(make_spec(f"new-{i}").on("gpu-a").build())
        changed, _, _ = backend.poll_changes(time.time())
        assert [(s.workload_id, s.state) for s in changed] == [
            (f"new-{i}", WorkerState.STARTING)]


def test_release_reports_the_attempt_gone(fake: FakeKubernetes,
                                          backend: KubernetesBackend) -> None:
    backend.launch(make_spec("done").on("gpu-a").build())
    fake.run(pod_name("done", 0, 0))
    fake.exit(pod_name("done", 0, 0), 0)
    backend.poll_changes(time.time())
    backend.release("done", 0)
    wait_for(caught_up(fake, backend))
    assert backend.poll_changes(time.time()) == ([], [("done", 0)], False)


def test_a_compacted_watch_lists_again_and_reports_everything(fake: FakeKubernetes) -> None:
    from kubernetes import client

    api = client.CoreV1Api(fake.api_client())
    informer = Informer(api.list_namespaced_pod, "corral", watch_timeout_s=1,
                        what="pods").start()
    try:
        wait_for(lambda: informer.objects() is not None)
        assert informer.take_changed() is None  # the first list: everything
        assert informer.take_changed() == set()
        with fake._cond:  # a change, then compaction, before the watch could read it:
            fake.add_node("gpu-z")  # its version is now too old, so on reconnecting it
            fake.compact()  # gets 410 Gone
        wait_for(lambda: informer.lists == 2)
        assert informer.take_changed() is None
    finally:
        fake.close_watches()
        informer.close()


def test_the_deltas_add_up_to_a_full_poll_after_random_histories(
        fake: FakeKubernetes, backend: KubernetesBackend) -> None:
    rng = random.Random(7)
    assert backend.poll_changes(time.time()) == ([], [], True)  # the watches start
    view: dict[Key, list[tuple]] = {}
    ids: list[str] = []
    for step in range(60):
        op = rng.choice(["launch", "launch", "run", "exit", "stop", "release", "node"])
        live = [i for i in ids if (i, 0) in backend._attempts]
        if op == "launch" or not live:
            wid = f"h-{step}"
            ids.append(wid)
            backend.launch(make_spec(wid).on(rng.choice(["gpu-a", "gpu-b"])).build())
        elif op == "run":
            name = pod_name(rng.choice(live), 0, 0)
            if ("corral", name) in fake.pods:
                fake.run(name)
        elif op == "exit":
            name = pod_name(rng.choice(live), 0, 0)
            if ("corral", name) in fake.pods:
                fake.exit(name, rng.choice([0, 1]))
        elif op == "stop":
            backend.stop(rng.choice(live), 0, 30.0, "test")
        elif op == "release":
            wid = rng.choice(live)
            if all(s.state.ended for s in backend.poll(time.time()) if s.workload_id == wid):
                backend.release(wid, 0)
        else:
            node = rng.choice(["gpu-a", "gpu-b"])
            fake.set_ready(node, rng.random() < 0.7)
        wait_for(caught_up(fake, backend))
        changed, gone, everything = backend.poll_changes(time.time())
        if everything:
            view = {}
        for key in gone:
            view.pop(key, None)
        view.update(by_key(changed))
        assert view == by_key(backend.poll(time.time())), f"step {step}: {op}"
