"""`corral providers add | ls | rm` against a real `corral up`: added at run time, kept across a
restart, removed through a drain, and refused with the field named; nothing secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.testing.corral_up import CorralServer

pytestmark = pytest.mark.slow

AWS = """
name: aws-use1
kind: aws
max_nodes: 2
settings:
  region: us-east-1
  image_id: ami-0123abcd
  instance_types: [g6.xlarge]
  profile: corral-prod
  endpoint_url: http://127.0.0.1:9
"""


def test_add_ls_restart_rm(tmp_path: Path) -> None:
    server = CorralServer(tmp_path / "cp").start()
    try:
        spec = tmp_path / "aws.yaml"
        spec.write_text(AWS)
        added = server.cli("providers", "add", str(spec))
        assert "provider aws-use1 (aws) added" in added.stdout
        again = server.cli("providers", "add", str(spec), check=False)
        assert again.returncode == 1 and "exists" in again.stderr + again.stdout
        bad = tmp_path / "bad.yaml"
        bad.write_text(AWS.replace("name: aws-use1", "name: other").replace(
            "profile: corral-prod", "aws_secret_access_key: hunter2"))
        refused = server.cli("providers", "add", str(bad), check=False)
        assert refused.returncode == 1
        assert "aws_secret_access_key" in refused.stderr + refused.stdout
        assert "hunter2" not in refused.stderr + refused.stdout
        server.stop()
        server.start()  # a restart keeps what was added
        (listed,) = server.cli_json("providers", "ls")  # type: ignore[misc]
        assert (listed["name"], listed["origin"], listed["lifecycle"]) == (
            "aws-use1", "api", "active")
        assert listed["settings"]["profile"] == "corral-prod"
        bad_timeout = server.cli("providers", "rm", "aws-use1", "--timeout", "soon",
                                 check=False)
        assert bad_timeout.returncode == 2 and "--timeout" in bad_timeout.stderr
        gone = server.cli("providers", "rm", "aws-use1", "--timeout", "30m")
        assert "aws-use1 is retiring" in gone.stdout and "30m" in gone.stdout
        forced = server.cli("providers", "rm", "aws-use1", "--force")
        assert "its work is stopped now" in forced.stdout
        audit = server.cli_json("audit", "--action", "provider.remove")["items"]  # type: ignore[index]
        assert [e["detail"]["timeout_s"] for e in audit] == [1800.0, 0.0]
        missing = server.cli("providers", "rm", "nope", check=False)
        assert missing.returncode == 1
        # the bare command still lists the pool's providers (as before the subcommands)
        assert server.cli("providers").returncode == 0
    finally:
        server.stop()
