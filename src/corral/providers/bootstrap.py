"""The user-data that turns a rented machine into an agent, and its reading back.

A launched instance runs one shell script (cloud-init user-data) that starts
``corral agent --server URL --join-token T``. What the agent should declare about the host that
it cannot find itself (provider name, capacity kind, price) travels as ``CORRAL_AGENT_*``
environment variables set by the script; the instance id comes from the cloud's metadata
endpoint where there is one. `parse_user_data` reads the script back: the test harness that
"boots" emulated instances (corral.testing.ec2) uses it, so the script and its reader cannot drift.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["AgentBoot", "agent_user_data", "parse_user_data"]

_ENV = re.compile(r"^export (CORRAL_AGENT_[A-Z_]+)=(.*)$")
_EXEC = re.compile(r"^exec corral agent (.*)$")
#: the instance metadata service (IMDSv2: a session token first)
IMDS_INSTANCE_ID = (
    'TOKEN=$(curl -sfX PUT http://169.254.169.254/latest/api/token '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 300" || true)\n'
    'export CORRAL_AGENT_INSTANCE_ID="$(curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" '
    'http://169.254.169.254/latest/meta-data/instance-id || true)"\n')


@dataclass(frozen=True)
class AgentBoot:
    server: str
    join_token: str
    env: Mapping[str, str]


def agent_user_data(server: str, join_token: str, facts: Mapping[str, str],
                    instance_id_script: str = IMDS_INSTANCE_ID) -> str:
    """A bash script that exports `facts` as CORRAL_AGENT_<KEY> and execs the agent."""
    lines = ["#!/bin/bash", "# corral: start the agent on this host (corral.providers.bootstrap)",
             "set -eu"]
    for key, value in sorted(facts.items()):
        lines.append(f"export CORRAL_AGENT_{key.upper()}={shlex.quote(str(value))}")
    return ("\n".join(lines) + "\n" + instance_id_script
            + f"exec corral agent --server {shlex.quote(server)} "
              f"--join-token {shlex.quote(join_token)}\n")


def parse_user_data(text: str) -> AgentBoot:
    """The server, join token and facts of a script made by `agent_user_data`."""
    env: dict[str, str] = {}
    command: list[str] | None = None
    for line in text.splitlines():
        if m := _ENV.match(line):
            values = shlex.split(m.group(2))
            env[m.group(1)] = values[0] if values else ""
        elif m := _EXEC.match(line):
            command = shlex.split(m.group(1))
    if command is None:
        raise ValueError("user-data: no 'exec corral agent' line: not made by agent_user_data")
    args = dict(zip(command[::2], command[1::2], strict=False))
    if "--server" not in args or "--join-token" not in args:
        raise ValueError("user-data: the agent command lacks --server or --join-token")
    return AgentBoot(args["--server"], args["--join-token"], env)
