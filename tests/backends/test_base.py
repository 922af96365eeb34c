"""LaunchSpec validation, records, and the public surface of corral.backends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import corral.backends
from corral.backends import InvalidLaunchSpec, LaunchSpec, WorkerState
from corral.backends.base import SHELL
from corral.core.model import WorkerAssignment

from .conftest import make_spec

ONE = (WorkerAssignment(0, "n0", (0,), 1000, 1024),)


@pytest.mark.parametrize(
    ("fields", "field_name", "hint"),
    [
        pytest.param({"command": "python train.py"}, "command", "set shell: true",
                     id="string-command-without-shell"),
        pytest.param({"command": ("python",), "shell": True}, "command", "one non-empty string",
                     id="shell-with-argv"),
        pytest.param({"command": ()}, "command", "non-empty list", id="empty-argv"),
        pytest.param({"command": ("",)}, "command", "program", id="empty-program"),
        pytest.param({"command": "  ", "shell": True}, "command", "non-empty", id="blank-shell"),
        pytest.param({"workload_id": ""}, "workload_id", "non-empty", id="empty-id"),
        pytest.param({"attempt": -1}, "attempt", ">= 0", id="negative-attempt"),
        pytest.param({"restart_count": 1}, "restart_count", "between 0 and attempt",
                     id="more-restarts-than-attempts"),
        pytest.param({"assignments": ()}, "assignments", "at least one", id="no-workers"),
        pytest.param({"assignments": (WorkerAssignment(1, "n0", (0,), 1000, 1),)},
                     "assignments", "0..0", id="worker-index-gap"),
        pytest.param({"assignments": (WorkerAssignment(0, "n0", (1, 1), 1000, 1),)},
                     "assignments", "distinct", id="duplicate-device"),
        pytest.param({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, "env", "set by corral",
                     id="reserved-cuda-visible-devices"),
        pytest.param({"env": {"CORRAL_WORKER_INDEX": "3"}}, "env", "remove it",
                     id="reserved-corral-name"),
        pytest.param({"env": {"A=B": "x"}}, "env", "not a valid variable name", id="bad-env-name"),
        pytest.param({"env": {"A": 1}}, "env", "must be a string", id="non-string-env-value"),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(fields: dict[str, Any], field_name: str,
                                              hint: str) -> None:
    base: dict[str, Any] = {"workload_id": "wl", "attempt": 0, "queue": "q",
                            "assignments": ONE, "command": ("true",)}
    with pytest.raises(InvalidLaunchSpec) as caught:
        LaunchSpec(**{**base, **fields})
    assert caught.value.field == field_name
    assert hint in str(caught.value)
    assert isinstance(caught.value, ValueError)  # the API layer maps it to a 4xx


def test_shell_runs_only_when_asked() -> None:
    plain = make_spec().command("echo", "$HOME").build()
    assert plain.argv() == ("echo", "$HOME")
    shelled = make_spec().shell("echo $HOME && true").build()
    assert shelled.argv() == (*SHELL, "echo $HOME && true")


def test_lists_become_tuples_so_specs_compare_equal() -> None:
    a = LaunchSpec("wl", 0, "q", list(ONE), ["a", "b"])  # type: ignore[arg-type]
    b = LaunchSpec("wl", 0, "q", ONE, ("a", "b"))
    assert a == b


ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
names = st.text(st.sampled_from("abcXYZ019_-."), min_size=1, max_size=12)
env_names = st.text(st.sampled_from("ABCXYZ_"), min_size=1, max_size=8).filter(
    lambda n: not n.startswith("CORRAL_") and n != "CUDA_VISIBLE_DEVICES")


@st.composite
def specs(draw: st.DrawFn) -> LaunchSpec:
    workers = draw(st.integers(1, 4))
    assignments = tuple(
        WorkerAssignment(i, draw(names), tuple(draw(st.lists(st.integers(0, 7), max_size=4,
                                                             unique=True))),
                         draw(st.integers(0, 1000)), draw(st.integers(0, 10**6)))
        for i in range(workers))
    shell = draw(st.booleans())
    command: tuple[str, ...] | str = (draw(ascii_text.filter(str.strip)) if shell
                                      else tuple(draw(st.lists(names, min_size=1, max_size=3))))
    attempt = draw(st.integers(0, 50))
    return LaunchSpec(
        workload_id=draw(names), attempt=attempt, queue=draw(names), assignments=assignments,
        command=command, shell=shell, user=draw(names),
        env=draw(st.dictionaries(env_names, ascii_text, max_size=3)),
        working_dir=draw(st.none() | names), checkpoint_dir=draw(st.none() | names),
        resume_from=draw(st.none() | names), log_dir=draw(st.none() | names),
        restart_count=draw(st.integers(0, attempt)))


@given(specs())
def test_records_round_trip(spec: LaunchSpec) -> None:
    assert LaunchSpec.from_record(spec.as_record()) == spec


def test_ended_states() -> None:
    assert {s for s in WorkerState if s.ended} == {
        WorkerState.SUCCEEDED, WorkerState.FAILED, WorkerState.STOPPED, WorkerState.LOST}


def test_public_surface_is_pinned() -> None:
    assert sorted(corral.backends.__all__) == [
        "AttemptStillRunning", "Backend", "BackendError", "BackendUnavailable", "DeviceHealth",
        "FakeBackend", "FakeGpuHealthProbe", "FakeWorld", "GpuHealthProbe", "HealthThresholds",
        "InvalidLaunchSpec", "InvalidRequest", "InventorySource", "LaunchConflict", "LaunchError",
        "LaunchSpec", "LocalBackend", "LogSource", "NodeVerdict", "NvmlHealthProbe",
        "UnknownAttempt", "WorkerState", "WorkerStatus", "node_verdict", "virtual_nodes",
    ]
    for name in corral.backends.__all__:
        assert hasattr(corral.backends, name), name
