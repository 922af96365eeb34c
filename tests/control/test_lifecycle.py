"""The state machine: legal moves, and that nothing leaves a terminal state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.control.lifecycle import TERMINAL, TRANSITIONS, IllegalTransition, State, is_legal

S = State


@pytest.mark.parametrize(("current", "target", "legal"), [
    (S.PENDING, S.SCHEDULED, True),
    (S.PENDING, S.RUNNING, False),
    (S.SCHEDULED, S.STARTING, True),
    (S.STARTING, S.RUNNING, True),
    (S.STARTING, S.SUCCEEDED, True),
    (S.RUNNING, S.PENDING, True),
    (S.RUNNING, S.PREEMPTED, True),
    (S.PREEMPTED, S.PENDING, True),
    (S.PREEMPTED, S.RUNNING, False),
    (S.SUCCEEDED, S.PENDING, False),
    (S.CANCELLED, S.RUNNING, False),
    (S.FAILED, S.PENDING, False),
], ids=lambda v: str(v))
def test_transitions(current: State, target: State, legal: bool) -> None:
    assert is_legal(current, target) is legal


def test_terminal_states_are_the_ends() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED} == TERMINAL


def test_illegal_transition_names_what_is_allowed() -> None:
    e = IllegalTransition("w-1", "succeeded", "cancelled")
    assert "w-1 is succeeded" in str(e) and "it has ended" in str(e)


@given(st.lists(st.sampled_from(list(State)), max_size=30))
def test_walks_never_leave_a_terminal_state(targets: list[State]) -> None:
    state = S.PENDING
    for t in targets:
        if is_legal(state, t):
            assert state not in TERMINAL
            state = t
    assert all(state in TRANSITIONS for state in State)
