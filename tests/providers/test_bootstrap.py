"""The agent's user-data: a valid bash script whose agent command the agent's CLI accepts, with
the join token in the environment (not on the command line), read back exactly."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from typer.testing import CliRunner

from corral.agent.command import agent
from corral.providers.bootstrap import FLAGS, agent_user_data, parse_user_data

LABELS = (("team", "vision"), ("fabric", "ib-ndr"))
FACTS = {"provider": "aws-use1", "region": "us-east-1", "zone": "us-east-1a",
         "instance_type": "p5.48xlarge", "price_per_gpu_hour": "12.290000",
         "capacity_kind": "spot", "spot_notice_url": "http://169.254.169.254"}


def test_round_trip() -> None:
    text = agent_user_data("https://c.example:8443/", "cjt_a'b \"c", FACTS)
    boot = parse_user_data(text)
    assert (boot.server, boot.join_token) == ("https://c.example:8443/", "cjt_a'b \"c")
    assert {k: boot.args[v] for k, v in FLAGS.items()} == FACTS


def test_the_token_is_not_on_the_command_line() -> None:
    text = agent_user_data("http://s", "cjt_secret", FACTS)
    (command,) = [line for line in text.splitlines() if line.startswith("exec corral agent")]
    assert "cjt_secret" not in command and "export CORRAL_JOIN_TOKEN=cjt_secret" in text


def test_it_is_valid_bash() -> None:
    text = agent_user_data("http://s", "t", FACTS)
    assert subprocess.run(["bash", "-n"], input=text.encode(), check=False).returncode == 0


def test_the_agent_cli_accepts_its_flags() -> None:
    """Every flag the script passes is one `corral agent` has (checked with --help parsing:
    an unknown option fails before the agent starts)."""
    text = agent_user_data("http://s", "t", FACTS, LABELS)
    (command,) = [line for line in text.splitlines() if line.startswith("exec corral agent")]
    argv = [a.replace("$INSTANCE_ID", "i-1") for a in shlex.split(command)[3:]]
    import typer

    app = typer.Typer()
    app.command()(agent)
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output


def test_unknown_facts_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown facts"):
        agent_user_data("http://s", "t", {"colour": "red"})


def test_the_providers_labels_travel_as_label_flags_and_are_joined_with() -> None:
    """An instance's labels (the provider's `labels`, `Offer.labels`) are `--label key=value`
    flags in its script, read back as such, and the agent joins carrying them."""
    from corral.agent.command import _labels
    from corral.agent.host import Declared, host_facts

    boot = parse_user_data(agent_user_data("http://s", "t", FACTS, LABELS))
    assert boot.labels == dict(LABELS) and "--label" not in boot.args
    assert boot.argv()[-4:] == ["--label", "fabric=ib-ndr", "--label", "team=vision"]
    flags = [kv for i, kv in enumerate(boot.argv()) if i and boot.argv()[i - 1] == "--label"]
    facts = host_facts(Declared(gpus=0, labels=_labels(flags)), gpus=list)
    assert {k: facts.labels[k] for k in ("team", "fabric")} == dict(LABELS)


@pytest.mark.parametrize(("given", "message"), [
    (["team"], "give key=value"), (["corral.dev/container-runtime=podman"], "set by corral"),
    (["team=a b"], "the value of 'team'"),
    ([f"k{i}=v" for i in range(65)], "65 labels given; a host joins with at most 64")])
def test_bad_label_flags_are_refused_naming_the_flag(given: list[str], message: str) -> None:
    from corral.agent.command import _labels

    with pytest.raises(ValueError, match=message) as e:
        _labels(given)
    assert str(e.value).startswith("--label")


def test_as_many_label_flags_as_a_pool_file_allows_are_joined_with() -> None:
    from corral.agent.command import _labels
    from corral.agent.host import Declared, host_facts
    from corral.agent.protocol import JoinIn

    labels = _labels([f"k{i}=v" for i in range(64)])
    facts = host_facts(Declared(gpus=0, labels=labels), gpus=list)
    assert len(facts.labels) > 64  # the agent's own beside them, and the join takes them all
    JoinIn.model_validate({"node_id": "n1", "facts": facts.model_dump()})
