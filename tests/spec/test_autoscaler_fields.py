"""The pool file's `autoscaler:` section: every knob of the pure policy
(`corral.autoscale.pool.AutoscalerConfig`) can be set there and arrives in the config the
server's autoscaler runs with (issue 11)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import ValidationError

from corral.autoscale.pool import AutoscalerConfig
from corral.control.pool_providers import _config
from corral.spec import PoolSpec, SpecError
from corral.spec.pool import AutoscalerSpec


def _spec_name(config_field: str) -> str:
    return config_field.removesuffix("_s")


def test_every_autoscaler_knob_is_in_the_pool_file() -> None:
    """Each `AutoscalerConfig` field has its `autoscaler:` key (durations without `_s`), and a
    value other than the default given there arrives in the policy's config."""
    spec_fields = set(AutoscalerSpec.model_fields)
    missing = [f.name for f in dataclasses.fields(AutoscalerConfig)
               if _spec_name(f.name) not in spec_fields]
    assert not missing, f"AutoscalerConfig knobs the pool file cannot set: {missing}"
    given: dict[str, Any] = {}
    for f in dataclasses.fields(AutoscalerConfig):
        default = getattr(AutoscalerConfig(), f.name)
        assert isinstance(default, int | float) and not isinstance(default, bool), f.name
        given[_spec_name(f.name)] = default * 2 + 1
    config = _config(PoolSpec.model_validate({"autoscaler": given}).autoscaler)
    for f in dataclasses.fields(AutoscalerConfig):
        assert getattr(config, f.name) == getattr(AutoscalerConfig(), f.name) * 2 + 1, f.name


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
], ids=["negative-premium", "word-premium", "infinite-premium", "word-duration",
        "negative-duration", "no-launches", "no-waiting", "misspelt"])
def test_bad_autoscaler_values_are_refused_naming_the_field(autoscaler: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PoolSpec.model_validate({"autoscaler": autoscaler})
    assert message in str(SpecError.from_validation(info.value))
