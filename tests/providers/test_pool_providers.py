"""Providers in the pool file: `kind: static | ssh | aws` with settings and autoscaler bounds,
refused with the field named; the aws ones built and answering through moto; the autoscaler
made only when some provider rents, with join tokens good for as many joins as launched."""

from __future__ import annotations

from decimal import Decimal

import pydantic
import pytest

from corral.control.pool_providers import autoscaler_from_pool, provider_limits, renting_providers
from corral.providers.aws import AwsProvider
from corral.spec.pool import PoolSpec
from corral.store import Store
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
])
def test_bad_providers_are_refused_naming_the_field(provider, message) -> None:
    with pytest.raises(pydantic.ValidationError) as e:
        PoolSpec.model_validate({"providers": [provider]})
    assert message in str(e.value)


def test_only_renting_providers_get_an_autoscaler(tmp_path) -> None:
    store = Store(sqlite_url(tmp_path / "c.db"))
    store.upgrade()
    static_only = PoolSpec.model_validate({"providers": [STATIC]})
    assert renting_providers(static_only, "c1") == {}
    assert autoscaler_from_pool(store, static_only, "c1", "http://x", lambda: 0.0) is None
    spec = PoolSpec.model_validate({"providers": [STATIC, AWS]})
    assert provider_limits(spec)["aws-use1"].max_spend_per_hour == Decimal("400")
    assert "onprem" not in provider_limits(spec)
    scaler = autoscaler_from_pool(store, spec, "c1", "http://x", lambda: 0.0)
    assert scaler is not None and set(scaler.providers) == {"aws-use1"}
    token = scaler.join_token(3)
    from corral.store.agents import list_join_tokens

    with store.read() as c:
        (record,) = list_join_tokens(c)
    assert token.startswith("cjt_") and record.uses_left == 3


def test_an_aws_provider_from_the_pool_file_answers(ec2_env) -> None:
    settings = {**AWS["settings"], "endpoint_url": ec2_env["AWS_ENDPOINT_URL"]}
    spec = PoolSpec.model_validate({"providers": [{**AWS, "settings": settings}]})
    (aws,) = renting_providers(spec, "c1").values()
    assert isinstance(aws, AwsProvider)
    offers = aws.offers()
    assert {(o.instance_type, o.zone) for o in offers} == {("g6.xlarge", "us-east-1a")}
