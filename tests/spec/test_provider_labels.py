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
