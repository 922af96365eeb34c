"""The user-data that turns a rented machine into an agent, and its reading back.

A launched instance runs one shell script (cloud-init user-data) that starts
``corral agent --server URL`` with what the host cannot find out itself as the agent's own flags
(`--provider`, `--region`, `--zone`, `--instance-type`, `--price`, `--capacity-kind`, and on an
EC2 spot instance `--spot-notice-url`, where it polls for its interruption notice), the labels its provider
declares for it (one `--label key=value` each: the node joins carrying them), and its
instance id from the cloud's metadata endpoint (`--instance-id`, how the control plane ties the
instance to the node it becomes). The join token travels in the environment
(`CORRAL_JOIN_TOKEN`, which the agent reads), not on the command line, so that `ps` on the host
does not show it. `parse_user_data` reads the script back: the test harness that "boots"
emulated instances (corral.testing.ec2) uses it, so the script and its reader cannot drift.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["EC2_METADATA_URL", "FLAGS", "LABEL_FLAG", "AgentBoot", "agent_user_data", "parse_user_data"]

#: facts the autoscaler knows about an instance -> the agent's flag for each
FLAGS = {"provider": "--provider", "region": "--region", "zone": "--zone",
         "instance_type": "--instance-type", "price_per_gpu_hour": "--price",
         "capacity_kind": "--capacity-kind", "spot_notice_url": "--spot-notice-url"}
#: EC2's instance metadata service: where an agent on a spot instance reads its notice
EC2_METADATA_URL = "http://169.254.169.254"
_ENV = re.compile(r"^export ([A-Z_]+)=(.*)$")
_EXEC = re.compile(r"^exec corral agent (.*)$")
LABEL_FLAG = "--label"
#: the instance metadata service (IMDSv2: a session token first)
IMDS_INSTANCE_ID = (
    'IMDS_TOKEN=$(curl -sfX PUT http://169.254.169.254/latest/api/token '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 300" || true)\n'
    'INSTANCE_ID="$(curl -sf -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" '
    'http://169.254.169.254/latest/meta-data/instance-id || true)"\n')


@dataclass(frozen=True)
class AgentBoot:
    server: str
    join_token: str
    args: Mapping[str, str]  # the agent's flags besides --server (e.g. "--provider": "aws-use1")
    labels: Mapping[str, str] = field(default_factory=dict)  # its `--label key=value` flags

    def argv(self) -> list[str]:
        """The agent's flags besides --server, as a command line."""
        return [*(x for kv in self.args.items() for x in kv),
                *(x for k, v in sorted(self.labels.items()) for x in (LABEL_FLAG, f"{k}={v}"))]


def agent_user_data(server: str, join_token: str, facts: Mapping[str, str],
                    labels: Sequence[tuple[str, str]] = (),
                    instance_id_script: str = IMDS_INSTANCE_ID) -> str:
    """A bash script that starts the agent with `facts` as its flags (keys of `FLAGS`) and
    `labels` as its `--label key=value` flags."""
    unknown = sorted(set(facts) - set(FLAGS))
    if unknown:
        raise ValueError(f"agent_user_data: unknown facts {unknown}; use {sorted(FLAGS)}")
    flags = " ".join([f"{FLAGS[k]} {shlex.quote(str(v))}" for k, v in sorted(facts.items())]
                     + [f"{LABEL_FLAG} {shlex.quote(f'{k}={v}')}"
                        for k, v in sorted(labels)])
    return ("#!/bin/bash\n# corral: start the agent on this host (corral.providers.bootstrap)\n"
            "set -eu\n"
            f"export CORRAL_JOIN_TOKEN={shlex.quote(join_token)}\n"
            + instance_id_script
            + f"exec corral agent --server {shlex.quote(server)} {flags} "
              '--instance-id "$INSTANCE_ID"\n')


def parse_user_data(text: str) -> AgentBoot:
    """The server, join token and flags of a script made by `agent_user_data`."""
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
    pairs = list(zip(command[::2], command[1::2], strict=False))
    args = {flag: value for flag, value in pairs if flag != LABEL_FLAG}
    labels = dict(value.split("=", 1) for flag, value in pairs if flag == LABEL_FLAG)
    if "--server" not in args or "CORRAL_JOIN_TOKEN" not in env:
        raise ValueError("user-data: the agent command lacks --server or CORRAL_JOIN_TOKEN")
    server = args.pop("--server")
    return AgentBoot(server, env["CORRAL_JOIN_TOKEN"], args, labels)
