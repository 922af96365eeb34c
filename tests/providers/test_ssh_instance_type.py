"""An ssh host's instance type (`ssh:<gpus>x<model>`) is spelt once, in corral.providers.base:
the ssh provider's offers name it so and the pool file keys `idle_timeouts` and
`instance_labels` by it (corral.spec imports it; no provider imports spec)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import corral
from corral.control.pool_providers import renting_providers
from corral.providers import base
from corral.providers.base import ssh_instance_type
from corral.providers.ssh import SshProvider
from corral.spec.pool import PoolSpec


def _pool(idle_timeouts: dict[str, str]) -> PoolSpec:
    return PoolSpec.model_validate({"providers": [{
        "name": "rack1", "kind": "ssh", "idle_timeouts": idle_timeouts,
        "settings": {"identity_file": "/etc/corral/id", "known_hosts": "/etc/corral/kh",
                     "hosts": [{"name": "h1", "address": "10.0.0.1", "gpus": 2,
                                "gpu_model": "L4", "gpu_memory": "24GiB"}]}}]})


def test_the_type_an_ssh_host_is_offered_as_is_the_key_the_pool_file_takes() -> None:
    spec = _pool({ssh_instance_type(2, "L4"): "5m"})
    built = renting_providers(spec, "c1", "https://corral.test", lambda n: "cjt")["rack1"]
    assert isinstance(built, SshProvider)
    assert [built._offer(h).instance_type for h in built.hosts] == ["ssh:2xL4"]
    with pytest.raises(ValueError, match=r"idle_timeouts\.ssh:2\*L4: not an instance type"):
        _pool({"ssh:2*L4": "5m"})


def test_the_ssh_shape_is_spelt_in_one_place() -> None:
    """A second spelling could drift from the offers' (a key then accepted names nothing)."""
    src = Path(corral.__file__).parent
    spelt = sorted(str(p.relative_to(src)) for p in src.rglob("*.py")
                   if re.search(r"""f["']ssh:\{""", p.read_text()))
    assert spelt == [str(Path(base.__file__).relative_to(src))]
