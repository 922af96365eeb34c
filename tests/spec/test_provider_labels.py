"""A provider's `labels` (and an ssh host's own) in the pool file (issue 11): checked as node
labels are (Kubernetes syntax, none under corral.dev/), refused naming the field; a static
provider's reach every node it lists, a group's own winning; `runs_images` on ssh too."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from corral.spec.pool import PoolSpec

SSH = {"name": "rack1", "kind": "ssh", "settings": {
    "hosts": [{"name": "h1", "address": "10.0.0.1", "gpus": 8, "gpu_model": "H100",
               "gpu_memory": "80GiB"}],
    "identity_file": "/etc/corral/id", "known_hosts": "/etc/corral/known_hosts"}}
STATIC = {"name": "onprem", "labels": {"team": "vision", "fabric": "roce"},
          "node_groups": [{"name": "a", "count": 2, "gpu_model": "A100", "gpus": 8,
                           "gpu_memory": "80GiB", "labels": {"fabric": "ib"}}]}


def _pool(provider: dict[str, Any]) -> PoolSpec:
    return PoolSpec.model_validate({"providers": [provider]})


@pytest.mark.parametrize(("provider", "message"), [
    ({**STATIC, "labels": {"corral.dev/zone": "z"}}, r"labels\n.*set by corral"),
    ({**STATIC, "labels": {"team vision": "x"}}, r"labels\n.*label key 'team vision'"),
    ({**STATIC, "labels": {"team": "a b"}}, r"labels\n.*the value of 'team'"),
    ({**SSH, "settings": {**SSH["settings"], "hosts": [
        {**SSH["settings"]["hosts"][0], "labels": {"corral.dev/vendor": "amd"}}]}},
     r"settings\.hosts\.0\.labels.*set by corral"),
    ({**SSH, "settings": {**SSH["settings"], "runs_images": "podman"}},
     r"settings\.runs_images"),
])
def test_bad_labels_are_refused_naming_the_field(provider: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        _pool(provider)


def test_a_static_providers_labels_reach_its_nodes_a_groups_own_win() -> None:
    nodes = _pool(STATIC).nodes()
    assert [dict(n.labels) for n in nodes] == [{"team": "vision", "fabric": "ib"}] * 2


def test_ssh_hosts_declare_labels_and_images() -> None:
    ssh = {**SSH, "labels": {"team": "vision"}, "settings": {
        **SSH["settings"], "runs_images": True,
        "hosts": [{**SSH["settings"]["hosts"][0], "labels": {"fabric": "ib"}}]}}
    p = _pool(ssh).providers[0]
    assert (p.labels, p.ssh.runs_images, p.ssh.hosts[0].labels) == (
        {"team": "vision"}, True, {"fabric": "ib"})


# -- labels per instance type (`instance_labels`, issue 11) --

AWS = {"name": "aws-mix", "kind": "aws", "labels": {"team": "vision"}, "settings": {
    "region": "us-east-1", "image_id": "ami-0123abcd",
    "instance_types": ["g5.xlarge", "g6.xlarge"]}}


def test_instance_labels_merge_over_the_providers() -> None:
    p = _pool({**AWS, "instance_labels": {"g6.xlarge": {"gpu-class": "inference",
                                                        "team": "serving"}}}).providers[0]
    assert p.labels_of("g6.xlarge") == {"team": "serving", "gpu-class": "inference"}
    assert p.labels_of("g5.xlarge") == {"team": "vision"}
    host = {**SSH, "labels": {"a": "1", "b": "1"}, "instance_labels": {"ssh:8xH100": {
        "b": "2", "c": "2"}}, "settings": {**SSH["settings"], "hosts": [
            {**SSH["settings"]["hosts"][0], "labels": {"c": "3"}}]}}
    p = _pool(host).providers[0]
    assert p.host_labels(p.ssh.hosts[0]) == {"a": "1", "b": "2", "c": "3"}


@pytest.mark.parametrize(("provider", "message"), [
    ({**AWS, "instance_labels": {"p5.48xlarge": {"a": "b"}}},
     r"instance_labels\.p5\.48xlarge: not an instance type of provider aws-mix \(it rents "
     r"g5\.xlarge, g6\.xlarge\)"),
    ({**SSH, "instance_labels": {"ssh:8xA100": {"a": "b"}}},
     r"instance_labels\.ssh:8xA100: not an instance type of provider rack1 \(it rents ssh:8xH100\)"),
    ({**STATIC, "instance_labels": {"a": {"a": "b"}}},
     r"instance_labels: a static provider rents nothing; .* node group has labels of its own"),
    ({**AWS, "instance_labels": {"g6.xlarge": {"corral.dev/zone": "z"}}},
     r"instance_labels\n.*g6\.xlarge: 'corral\.dev/zone': labels under corral\.dev/ are set"),
    ({**AWS, "instance_labels": {"g6.xlarge": {"gpu class": "x"}}},
     r"instance_labels\n.*g6\.xlarge: label key 'gpu class'"),
    ({**AWS, "instance_labels": {"g6.xlarge": {"gpu-class": 3}}},
     r"instance_labels\.`g6\.xlarge`\.gpu-class\n.*valid string"),
    ({**AWS, "instance_labels": {"g6.xlarge": {f"k{i}": "v" for i in range(65)}}},
     r"instance_labels\n.*g6\.xlarge: 65 labels; at most"),
], ids=["aws-unknown-type", "ssh-unknown-shape", "static", "reserved-prefix", "bad-key",
        "not-a-string", "too-many"])
def test_bad_instance_labels_are_refused_naming_the_field(provider: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        _pool(provider)


# -- what an instance joins with: the merge is bounded too (review S1 on e889e9f) --

def _many(prefix: str, n: int) -> dict[str, str]:
    return {f"{prefix}{i}": "v" for i in range(n)}


@pytest.mark.parametrize(("provider", "message"), [
    ({**AWS, "labels": _many("p", 40), "instance_labels": {"g6.xlarge": _many("t", 40)}},
     r"providers\.0\n.*instance_labels\.g6\.xlarge: 80 labels with the provider's; at most 64 "
     r"labels after merging"),
    ({**SSH, "labels": _many("p", 40), "settings": {**SSH["settings"], "hosts": [
        {**SSH["settings"]["hosts"][0], "labels": _many("h", 30)}]}},
     r"providers\.0\n.*settings\.hosts\.0 \(h1\): 70 labels with the provider's and "
     r"instance_labels\.ssh:8xH100; at most 64 labels after merging"),
], ids=["aws-type-over-provider", "ssh-host-over-provider"])
def test_merged_labels_over_the_agents_limit_are_refused(provider: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        _pool(provider)


def test_merged_labels_at_the_limit_join() -> None:
    """64 after merging (shared keys count once) pass the pool file, and the agent joins with
    them and its own corral.dev/ labels (vendor, container runtime): the wire's bound is the
    pool file's plus those, from one constant."""
    from corral.agent.host import Declared, host_facts
    from corral.agent.protocol import JoinIn

    p = _pool({**AWS, "labels": _many("p", 40), "instance_labels": {
        "g6.xlarge": {**_many("p", 10), **_many("t", 24)}}}).providers[0]
    labels = p.labels_of("g6.xlarge")
    assert len(labels) == 64
    facts = host_facts(Declared(gpus=1, gpu_model="L4", gpu_memory_mib=24_000, cpu_milli=4000,
                                memory_mib=16_000, labels=labels, vendor="nvidia"))
    assert len(facts.labels) == 66
    JoinIn.model_validate({"node_id": "n1", "facts": facts.model_dump()})
