"""Work refused at submission exactly when no node present and none that may join later could
run it (issue 11, control/future_nodes.py): image work when no node runs images, no renting
provider declares `runs_images: true` and no hand-made join token is still good; a selector
when no node and no provider's `labels` carry it. Both sides of each rule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.control.future_nodes import ImageRunners, future_key, future_nodes
from corral.control.pool_providers import add_provider, rentable_nodes
from corral.control.submission import Submissions
from corral.core.model import LABEL_CONTAINER_RUNTIME, Node, Queue
from corral.spec import SpecError, WorkloadSpec
from corral.spec.pool import PoolSpec
from corral.store import Store
from corral.store import agents as AG
from corral.store import pool as P
from corral.store.database import sqlite_url

AWS = {"name": "aws-use1", "kind": "aws",
       "settings": {"region": "us-east-1", "image_id": "ami-0123abcd",
                    "instance_types": ["g6.xlarge"], "zones": ["us-east-1a"]}}
SSH = {"name": "rack1", "kind": "ssh", "settings": {
    "hosts": [{"name": "h1", "address": "10.0.0.1", "gpus": 8, "gpu_model": "H100",
               "gpu_memory": "80GiB", "cpu": 64, "memory": "512GiB",
               "labels": {"fabric": "ib"}}],
    "identity_file": "/etc/corral/id_ed25519", "known_hosts": "/etc/corral/known_hosts"}}
#: an agent that joined without podman (the label its agent reports)
PLAIN = Node("plain", "agent", "L4", 1, 23_034, 4_000, 16_384,
             labels=((LABEL_CONTAINER_RUNTIME, "none"),))
IMAGE = {"image": "busybox:1.36", "gpus": 1}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(sqlite_url(tmp_path / "c.db"))
    s.upgrade()
    with s.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=64))
        P.sync_nodes(c, [{"name": "agent"}], [PLAIN])
    yield s
    s.close()


def _declare(store: Store, *providers: dict[str, Any]) -> None:
    with store.write() as c:
        for p in PoolSpec.model_validate({"providers": list(providers)}).providers:
            add_provider(c, p, by="root", now=0.0)


def _problem(store: Store, **fields: Any) -> str | None:
    """The field and message a fresh API process refuses the spec with (None: accepted)."""
    spec = WorkloadSpec.model_validate({"name": "w", "queue": "q", "command": ["x"], **fields})
    try:
        Submissions(store, rentable=future_nodes).check(spec)
    except SpecError as e:
        return str(e)
    return None


@dataclass(frozen=True)
class _Api:
    backend_name: str
    store: Store


def _image_honoured(store: Store) -> bool:
    said = ImageRunners().honoured(_Api("agent", store), frozenset({"setup", "workdir"}))
    return said is not None and "image" in said


def test_image_work_no_node_and_no_offer_can_run_is_refused_naming_image(store: Store) -> None:
    _declare(store, AWS)  # its AMI's podman unsaid
    problem = _problem(store, **IMAGE)
    assert problem is not None and "image" in problem and "no node can run images" in problem
    assert not _image_honoured(store)  # the agent backend's packaging check refuses it too


@pytest.mark.parametrize("provider", [
    {**AWS, "settings": {**AWS["settings"], "runs_images": True}},
    {**SSH, "settings": {**SSH["settings"], "runs_images": True}}])
def test_image_work_a_provider_declares_it_runs_is_accepted_to_wait(
        store: Store, provider: dict[str, Any]) -> None:
    _declare(store, provider)
    assert _problem(store, **IMAGE) is None
    assert _image_honoured(store)


def test_a_good_hand_made_join_token_keeps_image_work_accepted(store: Store) -> None:
    """An agent may still join with it, maybe with podman: image work that fits the pool's
    hardware waits for it; once the token is spent or revoked, it is refused again. The
    autoscaler's own tokens are for instances whose offers say what they run."""
    with store.write() as c:
        AG.create_join_token(c, "autoscaler", 0.0, name="autoscaler", uses=1)
    assert _problem(store, **IMAGE) is not None and not _image_honoured(store)
    with store.write() as c:
        record, _ = AG.create_join_token(c, "root", 0.0, uses=1)
    assert _problem(store, **IMAGE) is None and _image_honoured(store)
    assert _problem(store, image="busybox:1.36", gpus=1, gpu_models=["H100"]) is not None, (
        "a GPU no agent has shown is not guessed for the agent to come")
    with store.write() as c:
        AG.revoke_join_token(c, record.id)
    assert _problem(store, **IMAGE) is not None and not _image_honoured(store)


def test_one_api_process_sees_a_new_token_or_provider_without_a_node_changing(
        store: Store) -> None:
    """The submission check's pool is cached until the nodes' change number moves; a join
    token or a provider declared later does not move it, so it is part of the cache's key
    (`future_key`): the same process accepts image work after either, and refuses it again
    once the token is revoked."""
    subs = Submissions(store, rentable=future_nodes, rentable_key=future_key, pool_ttl_s=0.0)
    spec = WorkloadSpec.model_validate({"name": "w", "queue": "q", "command": ["x"], **IMAGE})
    with pytest.raises(SpecError):
        subs.check(spec)
    with store.write() as c:
        record, _ = AG.create_join_token(c, "root", 0.0, uses=1)
    subs.check(spec)  # an agent may join with podman
    with store.write() as c:
        AG.revoke_join_token(c, record.id)
    with pytest.raises(SpecError):
        subs.check(spec)
    _declare(store, {**AWS, "settings": {**AWS["settings"], "runs_images": True}})
    subs.check(spec)  # a provider that runs images may be rented for it


def test_a_selector_a_providers_labels_carry_is_accepted_others_are_refused(
        store: Store) -> None:
    assert _problem(store, gpus=1, node_selector={"team": "vision"}) is not None
    _declare(store, {**AWS, "labels": {"team": "vision"}}, SSH)
    assert _problem(store, gpus=1, node_selector={"team": "vision"}) is None
    assert _problem(store, gpus=8, node_selector={"fabric": "ib"}) is None  # an ssh host's own
    refused = _problem(store, gpus=1, node_selector={"team": "audio"})
    assert refused is not None and "node_selector" in refused
    with store.read() as c:
        labels = {n.provider: dict(n.labels) for n in rentable_nodes(c)}
    assert labels == {"aws-use1": {"team": "vision", LABEL_CONTAINER_RUNTIME: "none"},
                      "rack1": {"fabric": "ib", LABEL_CONTAINER_RUNTIME: "none"}}


def test_other_backends_answer_for_themselves(store: Store) -> None:
    _declare(store, {**AWS, "settings": {**AWS["settings"], "runs_images": True}})
    runners = ImageRunners()
    assert runners.honoured(_Api("slurm", store), frozenset({"setup"})) == frozenset({"setup"})
    assert runners.honoured(_Api("agent", store), None) is None
