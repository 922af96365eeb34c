"""The pool file's `autoscaler:` section: every knob of the pure policy
(`corral.autoscale.pool.AutoscalerConfig`) can be set there and arrives in the config the
server's autoscaler runs with (issue 11)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError

from corral.autoscale.pool import AutoscalerConfig
from corral.autoscale.spot import SpotRisk
from corral.control.pool_providers import _config
from corral.spec import PoolSpec, SpecError
from corral.spec.pool import AutoscalerSpec


def _spec_name(config_field: str) -> str:
    return config_field.removesuffix("_s")


#: a renting provider the `spot_risk` keys below may name
AWS = {"name": "aws", "kind": "aws", "settings": {
    "region": "us-east-1", "image_id": "ami-0123456789abcdef0", "instance_types": ["p4d.24xlarge"]}}
#: knobs that are not numbers: a value other than the default, as written and as the policy gets it
NOT_NUMBERS: dict[str, tuple[Any, Any]] = {
    "spot_risk": ({"aws": {"mtbi": "6h", "notice": "120s", "restart": "4m"}},
                  {"aws": SpotRisk(mtbi_s=21_600.0, notice_s=120.0, restart_s=240.0)}),
}


def test_every_autoscaler_knob_is_in_the_pool_file() -> None:
    """Each `AutoscalerConfig` field has its `autoscaler:` key (durations without `_s`), and a
    value other than the default given there arrives in the policy's config."""
    spec_fields = set(AutoscalerSpec.model_fields)
    missing = [f.name for f in dataclasses.fields(AutoscalerConfig)
               if _spec_name(f.name) not in spec_fields]
    assert not missing, f"AutoscalerConfig knobs the pool file cannot set: {missing}"
    given: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for f in dataclasses.fields(AutoscalerConfig):
        default = getattr(AutoscalerConfig(), f.name)
        if f.name in NOT_NUMBERS:
            given[_spec_name(f.name)], expected[f.name] = NOT_NUMBERS[f.name]
            assert expected[f.name] != default, f.name
            continue
        assert isinstance(default, int | float) and not isinstance(default, bool), \
            f"{f.name}: not a number; say in NOT_NUMBERS how the pool file sets it"
        given[_spec_name(f.name)] = expected[f.name] = default * 2 + 1
    spec = PoolSpec.model_validate({"providers": [AWS], "autoscaler": given})
    config = _config(spec.autoscaler)
    for f in dataclasses.fields(AutoscalerConfig):
        assert getattr(config, f.name) == expected[f.name], f.name


def test_the_defaults_are_the_policys() -> None:
    assert _config(AutoscalerSpec()) == AutoscalerConfig()


def test_cancelling_unneeded_instances_can_be_turned_off_and_takes_a_duration() -> None:
    off = PoolSpec.model_validate({"autoscaler": {"cancel_unneeded_after": None}})
    assert _config(off.autoscaler).cancel_unneeded_after_s is None
    two_minutes = PoolSpec.model_validate({"autoscaler": {"cancel_unneeded_after": "2m"}})
    assert _config(two_minutes.autoscaler).cancel_unneeded_after_s == 120.0


@pytest.mark.parametrize("autoscaler,message", [
    ({"move_premium": -0.1}, "autoscaler.move_premium: Input should be greater than or equal to 0"),
    ({"move_premium": "a lot"}, "autoscaler.move_premium: expected a number"),
    ({"move_premium": float("inf")}, "autoscaler.move_premium: must be a finite number"),
    ({"cancel_unneeded_after": "soon"},
     "autoscaler.cancel_unneeded_after: 'soon' is not a duration; write it like 90s"),
    ({"cancel_unneeded_after": -5}, "autoscaler.cancel_unneeded_after: a duration cannot be"),
    ({"max_instances_per_decision": 0},
     "autoscaler.max_instances_per_decision: Input should be greater than or equal to 1"),
    ({"max_waiting_considered": 0},
     "autoscaler.max_waiting_considered: Input should be greater than or equal to 1"),
    ({"move_premiun": 0.5}, "autoscaler.move_premiun: unknown field; check its spelling"),
    ({"spot_risk": {"aws": {"mtbi": 0, "restart": "4m"}}},
     "autoscaler.spot_risk.aws.mtbi: Input should be greater than 0"),
    ({"spot_risk": {"aws": {"mtbi": "6h", "restart": "-4m"}}},
     "autoscaler.spot_risk.aws.restart: '-4m' is not a duration"),
    ({"spot_risk": {"aws": {"mtbi": "6h", "notice": -1, "restart": "4m"}}},
     "autoscaler.spot_risk.aws.notice: a duration cannot be"),
    ({"spot_risk": {"aws": {"mtbi": "6h"}}},
     "autoscaler.spot_risk.aws.restart: required field is missing"),
    ({"spot_risk": {"aws": {"mtbi": "6h", "restart": "4m", "notise": "30s"}}},
     "autoscaler.spot_risk.aws.notise: unknown field"),
    ({"spot_risk": {"gcp": {"mtbi": "6h", "restart": "4m"}}},
     "autoscaler.spot_risk.gcp: no provider named 'gcp' in providers: (there are aws, lab); "
     "name one of them"),
    ({"spot_risk": {"lab": {"mtbi": "6h", "restart": "4m"}}},
     "autoscaler.spot_risk.lab: provider 'lab' is of kind static and rents no spot capacity"),
], ids=["negative-premium", "word-premium", "infinite-premium", "word-duration",
        "negative-duration", "no-launches", "no-waiting", "misspelt", "zero-mtbi",
        "negative-restart", "negative-notice", "no-restart", "misspelt-risk", "unknown-provider",
        "static-provider"])
def test_bad_autoscaler_values_are_refused_naming_the_field(autoscaler: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PoolSpec.model_validate({"providers": [AWS, {"name": "lab"}], "autoscaler": autoscaler})
    assert message in str(SpecError.from_validation(info.value))
