"""A workload's `checkpoint:` (corral.spec.checkpoint): how often it saves its progress, read by
the pool autoscaler's spot rule; refused naming the field when it says nothing or a bad time."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.autoscale.spot import Checkpointing
from corral.control.spot_inputs import checkpointing
from corral.control.submission import stored_form
from corral.spec import SpecError, WorkloadSpec

BASE = {"name": "train", "queue": "q", "command": ["python", "train.py"], "gpus": 1}


@pytest.mark.parametrize("given,expected", [
    ({"every": "30m", "on_notice": "20s"}, Checkpointing(interval_s=1800.0, write_s=20.0)),
    ({"every": "2h"}, Checkpointing(interval_s=7200.0)),
    ({"on_notice": 0}, Checkpointing(write_s=0.0)),
    (None, None),
], ids=["both", "periodic", "on-notice", "says-nothing"])
def test_checkpoint_reaches_the_spot_rule_through_the_stored_spec(
        given: dict[str, Any] | None, expected: Checkpointing | None) -> None:
    spec = WorkloadSpec.model_validate({**BASE, **({} if given is None else
                                                   {"checkpoint": given})})
    body = stored_form(spec)
    assert WorkloadSpec.from_stored(body) == spec
    assert checkpointing(body) == expected


@pytest.mark.parametrize("given,message", [
    ({}, "checkpoint: checkpoint says nothing: give every"),
    ({"every": 0}, "checkpoint.every: Input should be greater than 0"),
    ({"every": "often"}, "checkpoint.every: 'often' is not a duration"),
    ({"on_notice": -5}, "checkpoint.on_notice: a duration cannot be negative"),
    ({"on_notice": "2h"}, "checkpoint.on_notice: Input should be less than or equal to 3600"),
    ({"evry": "30m"}, "checkpoint.evry: unknown field"),
], ids=["empty", "zero-interval", "word", "negative-notice", "notice-over-1h", "misspelt"])
def test_bad_checkpoints_are_refused_naming_the_field(given: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate({**BASE, "checkpoint": given})
    assert message in str(SpecError.from_validation(info.value))


@pytest.mark.parametrize("grace,expected", [
    ("30s", Checkpointing(interval_s=1800.0, write_s=20.0)),
    ("10s", Checkpointing(interval_s=1800.0)),
], ids=["grace-long-enough", "killed-before-it-is-written"])
def test_a_checkpoint_on_notice_longer_than_its_grace_does_not_count(
        grace: str, expected: Checkpointing) -> None:
    spec = WorkloadSpec.model_validate({**BASE, "preemption_grace": grace,
                                        "checkpoint": {"every": "30m", "on_notice": "20s"}})
    assert checkpointing(stored_form(spec)) == expected


def test_an_unreadable_stored_checkpoint_falls_back_to_the_count() -> None:
    """A stored body written by another corral version: not a reason to stop the autoscaler."""
    assert checkpointing({**BASE, "checkpoint": {"every": "sometimes"}}) is None
