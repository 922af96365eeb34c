"""The deployment files say only true things: the Dockerfile copies paths that exist (and are not
kept out of the build context) and installs an extra the package has; the systemd unit and the
image start `corral up` with options it has; every `corral ...` line in docs/howto/ names a real
command with real options. (The image itself is not built here: no Docker daemon in CI.)"""

from __future__ import annotations

import configparser
import importlib.util
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import typer
from typer import _click as click  # typer vendors click
from typer.core import TyperGroup

from corral.cli.main import app
from corral.sdk import models as M

ROOT = Path(__file__).resolve().parents[2]
HOWTOS = sorted((ROOT / "docs" / "howto").glob("*.md"))


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _command_args(line: str) -> list[str]:
    """The words of one `corral ...` command, up to a pipe, redirection or `&&`."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word in {"|", ">", ">>", "&&", ";"}:
            return words[:i]
    return words


def check_corral_command(args: list[str]) -> None:
    """`args` (after `corral`) name a command that exists, and every option it uses is one of
    that command's (or its group's)."""
    command: click.Command = typer.main.get_command(app)
    ctx = click.Context(command)
    allowed = {"--help"}
    words = list(args)
    while isinstance(command, TyperGroup) and words and not words[0].startswith("-"):
        allowed |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"corral {' '.join(args)}: no command {words[0]!r}"
        command, ctx = sub, click.Context(sub, parent=ctx)
        words.pop(0)
    allowed |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    used = {w.split("=", 1)[0] for w in words if w.startswith("-") and w != "-"}
    assert used <= allowed, f"corral {' '.join(args)}: unknown options {sorted(used - allowed)}"


def _howto_commands(path: Path) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line.startswith("corral "):
                commands.append(_command_args(line)[1:])
    return commands


def test_the_dockerfile_copies_what_exists_and_installs_a_real_extra() -> None:
    steps = _instructions(ROOT / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copies = [rest.split()[:-1] for word, rest in steps if word in {"COPY", "ADD"}]
    assert copies, "the image installs from the repository's own files"
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.strip("/").split("/")[0] not in ignored, f"{source} is .dockerignored"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    installs = [rest for word, rest in steps if word == "RUN" and "pip install" in rest]
    assert installs and all(m in extras for r in installs for m in re.findall(r"\.\[(\w+)\]", r))


def test_the_image_runs_corral_up_with_real_options() -> None:
    steps = dict(_instructions(ROOT / "Dockerfile"))
    import json

    assert json.loads(steps["ENTRYPOINT"]) == ["corral"]
    cmd = json.loads(steps["CMD"])
    assert cmd[0] == "up" and "0.0.0.0" in cmd
    check_corral_command(cmd)


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(ROOT / "deploy" / "corral.service")
    return unit


def test_the_systemd_unit_starts_corral_up_hardened() -> None:
    unit = _unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].endswith("/corral") and exec_start[1] == "up"
    check_corral_command(exec_start[1:])
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert service.get(key) == value, key
    assert service["User"] != "root"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit() -> None:
    out = subprocess.run(["systemd-analyze", "verify", str(ROOT / "deploy" / "corral.service")],
                         capture_output=True, text=True, timeout=60)
    ours = [line for line in (out.stdout + out.stderr).splitlines()
            if "corral.service" in line and "is not executable" not in line]
    assert ours == []  # the only complaint allowed: /opt/corral is not installed here


@pytest.mark.parametrize("path", HOWTOS, ids=lambda p: p.name)
def test_every_howto_command_is_real(path: Path) -> None:
    commands = _howto_commands(path)
    assert commands, f"{path.name} shows no corral command"
    for args in commands:
        check_corral_command(args)


def test_the_checker_catches_a_made_up_command_or_option() -> None:
    with pytest.raises(AssertionError, match="no command 'frobnicate'"):
        check_corral_command(["users", "frobnicate"])
    with pytest.raises(AssertionError, match="--colour"):
        check_corral_command(["usage", "--colour", "red"])


def test_the_history_export_writes_the_generic_trace_columns() -> None:
    spec = importlib.util.spec_from_file_location("export_history",
                                                  ROOT / "docs" / "howto" / "export_history.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from corral.sim.generic import TASK_COLUMNS

    assert set(TASK_COLUMNS) <= set(module.TASK_COLUMNS)
    w = M.Workload.model_validate({
        "id": "w-1", "group_id": "w-1", "name": "w", "queue": "q", "user": "u", "kind": "job",
        "state": "succeeded", "reason_code": "", "reason_message": "", "attempt": 0,
        "restart_count": 0, "version": 1, "submitted_at": 110.0, "started_at": 120.0,
        "finished_at": 180.5, "spec": {"name": "w", "queue": "q", "gpus": 0.25, "cpu": "500m",
                                       "memory": "1GiB", "command": ["x"]}})
    row = dict(zip(module.TASK_COLUMNS, module.task_row(w, 100.0), strict=True))
    assert row == {"id": "w-1", "submit_time": 10.0, "gpus": 1, "gpu_milli": 250,
                   "cpu_milli": 500, "memory_mib": 1024, "duration": 60.5, "workers": 1,
                   "gpu_models": "", "queue": "q", "priority": 0}
