"""`--state` on `ls` and `cancel` is checked by the CLI: a typo is named as the option the user
typed, with the choices, before any request (so never as the server's `query.state` field); the
CLI's list of states is the server's own."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from corral.cli import workloads
from corral.cli.main import app
from corral.control.lifecycle import State


def test_the_cli_knows_exactly_the_servers_states() -> None:
    assert sorted(workloads.LIVE + workloads.ENDED) == sorted(s.value for s in State)


@pytest.mark.parametrize("args", [["ls", "--state", "bogus"],
                                  ["cancel", "-q", "team-a", "-s", "runing"]])
def test_a_wrong_state_names_the_option_and_the_choices(args: list[str]) -> None:
    # the URL is unreachable: reaching it would be a connection error, not exit 2
    r = CliRunner().invoke(app, [*args, "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 2, r.output
    assert "--state" in r.output and "is not a state" in r.output
    assert "pending" in r.output and "succeeded" in r.output
    assert "query" not in r.output


def test_states_are_case_insensitive() -> None:
    assert workloads._states(["Running", "PENDING"]) == ["running", "pending"]
    assert workloads._states(None) is None
