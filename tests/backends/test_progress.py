"""The progress contract's reader and the per (kind, model) throughput estimates."""

from __future__ import annotations

import pytest

from corral.backends.progress import Progress, ThroughputEstimates, read_progress


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param('{"steps": 10, "steps_per_s": 2}', Progress(10, 2.0), id="int-rate"),
    pytest.param('{"steps": 0, "steps_per_s": 0.5, "x": 1}', Progress(0, 0.5), id="extra-keys"),
    pytest.param('{"steps": 10', None, id="half-written"),
    pytest.param('[1, 2]', None, id="not-an-object"),
    pytest.param('{"steps": -1, "steps_per_s": 2}', None, id="negative-steps"),
    pytest.param('{"steps": true, "steps_per_s": 2}', None, id="bool-steps"),
    pytest.param('{"steps": 1, "steps_per_s": "fast"}', None, id="text-rate"),
    pytest.param('{"steps": 1, "steps_per_s": Infinity}', None, id="infinite-rate"),
    pytest.param('{"steps": 1}', None, id="no-rate"),
])
def test_read_progress(text: str, expected: Progress | None) -> None:
    assert read_progress(text) == expected


def test_estimates_follow_reports_and_stay_per_kind_and_model() -> None:
    e = ThroughputEstimates(alpha=0.5)
    e.report("a", "V100", 10.0)
    assert e.report("a", "V100", 20.0) == 15.0
    e.report("b", "V100", 1.0)
    e.report("a", "K80", 3.0)
    assert e.throughput_of("a") == (("K80", 3.0), ("V100", 15.0))
    assert e.throughput_of("c") == ()
