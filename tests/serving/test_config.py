"""A service's autoscaling config is refused with a message that names the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.serving import ScalingConfig, Target, TargetKind

T8 = ({"kind": "in_flight", "value": 8},)


@pytest.mark.parametrize("fields, named", [
    ({"targets": ()}, "targets"),
    ({"targets": ({"kind": "in_flight", "value": 0},)}, "value"),
    ({"targets": ({"kind": "queue", "value": 1},)}, "kind"),
    ({"targets": ({"kind": "latency", "value": 1, "percentile": 90},)}, "percentile"),
    ({"targets": T8 + T8}, "targets: one target per kind"),
    ({"targets": T8, "min_replicas": -1}, "min_replicas"),
    ({"targets": T8, "min_replicas": 3, "max_replicas": 2}, "max_replicas: must be >= min_replicas (3), got 2"),
    ({"targets": T8, "target_utilization": 1.5}, "target_utilization"),
    ({"targets": T8, "panic_window_s": 90}, "panic_window_s: must be <= stable_window_s (60), got 90"),
    ({"targets": T8, "panic_threshold": 1.0}, "panic_threshold"),
    ({"targets": T8, "scale_down": {"limits": [{"type": "pods", "value": -1, "period_s": 15}]}}, "value"),
    ({"targets": T8, "scale_up": {"select": "median"}}, "select"),
    ({"targets": T8, "max_replica": 3}, "max_replica"),
], ids=lambda x: str(x)[:40])
def test_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as e:
        ScalingConfig.model_validate(fields)
    assert named in str(e.value)


def test_defaults_are_the_references() -> None:
    c = ScalingConfig(targets=(Target(kind=TargetKind.IN_FLIGHT, value=8),))
    assert (c.stable_window_s, c.panic_window_s, c.panic_threshold, c.target_utilization) == \
        (60.0, 6.0, 2.0, 0.7)  # Knative KPA
    assert c.scale_up.stabilization_s == 0 and c.tolerance == 0.1  # HPA
    assert c.min_replicas <= c.max_replicas


def test_config_is_frozen() -> None:
    c = ScalingConfig(targets=(Target(kind=TargetKind.IN_FLIGHT, value=8),))
    with pytest.raises(ValidationError):
        c.max_replicas = 3
