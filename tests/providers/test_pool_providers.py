"""Providers in the pool file: `kind: static | ssh | aws` with settings and autoscaler bounds,
refused with the field named (a pasted key or credential refused); the ssh and aws ones built
into the real providers (aws answering through moto); the autoscaler reading the store's
renting providers, with join tokens good for as many joins as launched."""

from __future__ import annotations

from decimal import Decimal

import pydantic
import pytest

from corral.control.pool_providers import autoscaler_from_pool, provider_limits, renting_providers
from corral.providers.aws import AwsProvider
from corral.spec.pool import PoolSpec
from corral.store import Store
from corral.store import pool as P
from corral.store.database import sqlite_url

AWS = {"name": "aws-use1", "kind": "aws", "max_nodes": 4, "max_spend_per_hour": 400,
       "settings": {"region": "us-east-1", "image_id": "ami-0123abcd",
                    "instance_types": ["g6.xlarge"], "zones": ["us-east-1a"]}}
STATIC = {"name": "onprem", "node_groups": [{"name": "a", "count": 1, "gpu_model": "A100",
                                             "gpus": 8, "gpu_memory": "80GiB"}]}


@pytest.mark.parametrize("provider, message", [
    ({**AWS, "settings": {"region": "us-east-1"}}, "settings.image_id: Field required"),
    ({**AWS, "settings": {**AWS["settings"], "image_id": "not-an-ami"}}, "settings.image_id"),
    ({**AWS, "settings": {**AWS["settings"], "secret_key": "x"}}, "settings.secret_key"),
    ({**STATIC, "settings": {"region": "x"}}, "settings are for kind aws or ssh"),
    ({**AWS, "kind": "gce"}, "Input should be 'static', 'ssh' or 'aws'"),
    ({**AWS, "min_nodes": 5}, "min_nodes 5 is above max_nodes 4"),
    ({**AWS, "idle_timeouts": {"p5.48xlarge": "2m"}},
     "idle_timeouts.p5.48xlarge: not an instance type of provider aws-use1 (it rents "
     "g6.xlarge); name one of those, or use idle_timeout for all of them"),
    ({**AWS, "idle_timeouts": {"g6.xlarge": "40d"}}, "idle_timeouts.g6.xlarge: 3456000 s is out "
     "of range; give a duration from 0 to 30d"),
    ({**AWS, "idle_timeouts": {"g6.xlarge": "soon"}},
     "idle_timeouts.`g6.xlarge`\n  Value error, 'soon' is not a duration"),
    ({**AWS, "idle_timeout": -5}, "idle_timeout"),
    ({**STATIC, "idle_timeouts": {"x": 60}}, "idle_timeouts: a static provider rents nothing"),
])
def test_bad_providers_are_refused_naming_the_field(provider, message) -> None:
    with pytest.raises(pydantic.ValidationError) as e:
        PoolSpec.model_validate({"providers": [provider]})
    assert message in str(e.value)


def test_the_autoscaler_rents_from_the_stores_renting_providers_only(tmp_path) -> None:
    store = Store(sqlite_url(tmp_path / "c.db"))
    store.upgrade()
    static_only = PoolSpec.model_validate({"providers": [STATIC]})
    assert renting_providers(static_only, "c1") == {}
    idle = autoscaler_from_pool(store, static_only, "c1", "http://x", lambda: 0.0)
    # nothing rents: a pass reads no snapshot (the callable would fail the test) and does nothing
    assert idle.step(0.0, None, lambda: pytest.fail("read the cluster"),
                     lambda: pytest.fail("read the stopping work")) is None
    spec = PoolSpec.model_validate({"providers": [STATIC, AWS]})
    assert provider_limits(spec)["aws-use1"].max_spend_per_hour == Decimal("400")
    assert "onprem" not in provider_limits(spec)
    with store.write() as c:  # what `corral up` does with the pool file's providers
        P.sync_nodes(c, [p.model_dump(mode="json", exclude={"node_groups"})
                         for p in spec.providers], [])
    scaler = autoscaler_from_pool(store, spec, "c1", "http://x", lambda: 0.0)
    assert scaler.reload is not None
    providers, limits, retiring = scaler.reload()
    assert set(providers) == {"aws-use1"} and limits["aws-use1"].max_nodes == 4
    assert retiring == frozenset()
    token = scaler.join_token(3)
    from corral.store.agents import list_join_tokens

    with store.read() as c:
        (record,) = list_join_tokens(c)
    assert token.startswith("cjt_") and record.uses_left == 3


SSH = {"name": "rack1", "kind": "ssh", "max_nodes": 2, "settings": {
    "hosts": [{"name": "h1", "address": "10.0.0.1", "gpus": 8, "gpu_model": "H100",
               "gpu_memory": "80GiB", "cpu": 64, "memory": "512GiB",
               "price_per_gpu_hour": 1.2, "zone": "z1"},
              {"name": "h2", "address": "10.0.0.2", "port": 2222, "gpus": 8,
               "gpu_model": "H100", "gpu_memory": "80GiB"}],
    "identity_file": "/etc/corral/id_ed25519", "known_hosts": "/etc/corral/known_hosts",
    "wheel": "/opt/wheels/corral.whl"}}


def test_an_ssh_provider_in_the_pool_file_builds_the_real_provider() -> None:
    from corral.providers.ssh import SshProvider

    spec = PoolSpec.model_validate({"providers": [SSH]})
    (ssh,) = renting_providers(spec, "c1", "http://corral:8765", lambda n: "cjt_x").values()
    assert isinstance(ssh, SshProvider) and ssh.starts_agent
    assert ssh.server == "http://corral:8765" and ssh.join_token() == "cjt_x"
    assert [(h.name, h.address, h.port, h.gpus, h.zone) for h in ssh.hosts] == [
        ("h1", "10.0.0.1", 22, 8, "z1"), ("h2", "10.0.0.2", 2222, 8, "default")]
    assert str(ssh.identity_file) == "/etc/corral/id_ed25519"
    assert ssh.hosts[0].price_per_gpu_hour == Decimal("1.2")


@pytest.mark.parametrize("settings, message", [
    ({**SSH["settings"], "identity_file": "-----BEGIN OPENSSH PRIVATE KEY-----"},
     "identity_file is the path of a file on the server, not the key itself"),
    ({**SSH["settings"], "private_key": "abc"}, "settings.private_key"),
    ({**SSH["settings"], "hosts": []}, "settings.hosts"),
    ({k: v for k, v in SSH["settings"].items() if k != "known_hosts"}, "settings.known_hosts"),
    ({**SSH["settings"], "hosts": [{"name": "h1", "address": "a b"}]}, "settings.hosts.0.address"),
    ({**SSH["settings"], "hosts": [SSH["settings"]["hosts"][0]] * 2}, "host 'h1' is defined twice"),
], ids=["key-pasted", "secret-key", "no-hosts", "no-known-hosts", "bad-address", "dup-host"])
def test_bad_ssh_providers_are_refused_naming_the_field(settings, message) -> None:
    with pytest.raises(pydantic.ValidationError) as e:
        PoolSpec.model_validate({"providers": [{**SSH, "settings": settings}]})
    assert message in str(e.value)


def test_aws_credentials_by_profile_name_only() -> None:
    ok = {**AWS, "settings": {**AWS["settings"], "profile": "corral-prod"}}
    assert PoolSpec.model_validate({"providers": [ok]}).providers[0].aws.profile == "corral-prod"
    for bad in ({"aws_secret_access_key": "x"}, {"access_key_id": "AKIA..."}):
        with pytest.raises(pydantic.ValidationError, match=r"settings\."):
            PoolSpec.model_validate({"providers": [{**AWS, "settings": {**AWS["settings"],
                                                                        **bad}}]})


def test_an_aws_provider_from_the_pool_file_answers(ec2_env) -> None:
    settings = {**AWS["settings"], "endpoint_url": ec2_env["AWS_ENDPOINT_URL"]}
    spec = PoolSpec.model_validate({"providers": [{**AWS, "settings": settings}]})
    (aws,) = renting_providers(spec, "c1").values()
    assert isinstance(aws, AwsProvider)
    offers = aws.offers()
    assert {(o.instance_type, o.zone) for o in offers} == {("g6.xlarge", "us-east-1a")}


def test_the_pool_files_autoscaler_section_paces_the_autoscaler(tmp_path) -> None:
    store = Store(sqlite_url(tmp_path / "c.db"))
    store.upgrade()
    spec = PoolSpec.model_validate({"providers": [AWS], "autoscaler": {
        "every": "2s", "idle_timeout": "1m", "join_timeout": 300, "max_spend_per_hour": 99}})
    scaler = autoscaler_from_pool(store, spec, "c1", "http://x", lambda: 0.0)
    assert scaler.every_s == 2.0 and scaler.config.idle_timeout_s == 60.0
    assert scaler.config.join_timeout_s == 300.0
    assert scaler.budget.max_spend_per_hour == Decimal("99")
    with pytest.raises(pydantic.ValidationError, match=r"autoscaler\.every"):
        PoolSpec.model_validate({"autoscaler": {"every": 0}})


def test_work_that_only_a_renting_provider_fits_is_accepted_to_wait(tmp_path) -> None:
    """An autoscaled pool starts empty: a job is refused only if no declared provider could
    give a node for it (the catalog's hardware of aws types, ssh hosts)."""
    from corral.control.pool_providers import add_provider, rentable_nodes
    from corral.control.submission import Submissions
    from corral.core.model import Queue
    from corral.spec import SpecError, WorkloadSpec

    store = Store(sqlite_url(tmp_path / "c.db"))
    store.upgrade()
    aws = {**AWS, "settings": {**AWS["settings"],
                               "instance_types": ["g6.12xlarge", "not-in-catalog.xl"]}}
    with store.write() as c:
        P.upsert_queue(c, Queue("q", quota_gpus=64))
        add_provider(c, PoolSpec.model_validate({"providers": [aws]}).providers[0], by="root",
                     now=0.0)
        add_provider(c, PoolSpec.model_validate({"providers": [SSH]}).providers[0], by="root",
                     now=0.0)
        shapes = rentable_nodes(c)
    assert {(n.provider, n.gpu_model, n.gpu_count) for n in shapes} == {
        ("aws-use1", "L4", 4), ("rack1", "H100", 8)}
    subs = Submissions(store, rentable=rentable_nodes)
    for ok in ({"gpus": 4, "workers": 2}, {"gpus": 8, "gpu_models": ["H100"]}):
        subs.check(WorkloadSpec.model_validate({"name": "w", "queue": "q",
                                                "command": ["x"], **ok}))
    with pytest.raises(SpecError, match="gpus"):
        subs.check(WorkloadSpec.model_validate({"name": "w", "queue": "q", "command": ["x"],
                                                "gpus": 16}))
    assert Submissions(store).pool().nodes == ()  # without it: nothing could ever run


def test_idle_timeouts_per_provider_and_instance_type_reach_the_limits() -> None:
    spec = PoolSpec.model_validate({"providers": [
        {**AWS, "idle_timeout": "5m", "idle_timeouts": {"g6.xlarge": "90s"}},
        {**AWS, "name": "aws-b"}]})
    limits = provider_limits(spec)
    assert (limits["aws-use1"].idle_timeout_s, limits["aws-use1"].idle_timeouts) == (
        300.0, (("g6.xlarge", 90.0),))
    assert (limits["aws-b"].idle_timeout_s, limits["aws-b"].idle_timeouts) == (None, ())
