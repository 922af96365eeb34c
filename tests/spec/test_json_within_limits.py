"""`limits.json_within_limits` (issue 14): the API skips the spec's NUL/depth/size walk only
for JSON bytes the walk could find nothing in, and a spec validated with `WITHIN_LIMITS` is
the spec validated without it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.spec import WorkloadSpec
from corral.spec import limits as LIM
from corral.spec.workload import WITHIN_LIMITS

JOB = {"name": "train", "queue": "team-a", "gpus": 1, "command": ["python", "t.py"]}


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("body", "within"), [
    (json.dumps(JOB).encode(), True),
    (json.dumps({**JOB, "env": {"A": "a\x00b"}}).encode(), False),  # escaped NUL
    (json.dumps({**JOB, "env": {"A": "\ud800"}}).encode(), False),  # escaped lone surrogate
    (json.dumps({**JOB, "env": {"A": "é"}}, ensure_ascii=False).encode(), True),  # raw UTF-8
    (json.dumps({**JOB, "x": _nested(LIM.MAX_DEPTH)}).encode(), False),  # deeper than allowed
    (json.dumps({**JOB, "x": _nested(LIM.MAX_DEPTH - 2)}).encode(), True),
    (json.dumps(JOB).encode("utf-16"), False),  # not UTF-8
    (json.dumps({**JOB, "env": {"A": "a" * (LIM.MAX_SPEC_BYTES // 16)}}).encode(), False),
    (b'{"name": "a\xed\xa0\x80b", "queue": "q", "gpus": 1, "command": ["x"]}', False),
], ids=["plain", "nul", "surrogate", "utf8", "deep", "shallow", "utf16", "large",
        "raw-surrogate"])
def test_bytes_the_walk_might_refuse_are_left_to_it(body: bytes, within: bool) -> None:
    assert LIM.json_within_limits(body) is within
    if within:
        assert list(LIM.walk_problems(json.loads(body))) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-9, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=40),
    max_leaves=400)


@settings(max_examples=300, deadline=None)
@given(value=JSON, limit=st.sampled_from([64, 256, 1024, LIM.MAX_SPEC_BYTES]))
def test_the_bytes_never_pass_what_the_walk_refuses(value: Any, limit: int) -> None:
    for body in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False,
                                                        separators=(",", ":")).encode("utf-8",
                                                                                      "replace")):
        try:
            parsed = json.loads(body)
        except ValueError:
            continue
        if LIM.json_within_limits(body, limit):
            assert list(LIM.walk_problems(parsed, limit=limit)) == [], body


@pytest.mark.parametrize("spec", [
    JOB, {**JOB, "workers": {"min": 2, "max": 8}}, {**JOB, "env": {"A": "1"}, "cpu": "500m"}])
def test_the_context_changes_no_accepted_spec(spec: dict[str, Any]) -> None:
    assert LIM.json_within_limits(json.dumps(spec).encode())
    assert (WorkloadSpec.model_validate(spec, context=WITHIN_LIMITS)
            == WorkloadSpec.model_validate(spec))


def test_a_surrogate_in_raw_bytes_is_found_by_the_walk_it_is_left_to() -> None:
    """json.loads(bytes) decodes ED A0 80 as a lone surrogate (surrogatepass): the byte check
    must leave such a body to the walk, which refuses it naming the field."""
    body = b'{"name": "a\xed\xa0\x80b"}'
    assert json.loads(body) == {"name": "a\ud800b"}
    assert not LIM.json_within_limits(body)
    assert [where for where, _ in LIM.walk_problems(json.loads(body))] == [("name",)]
