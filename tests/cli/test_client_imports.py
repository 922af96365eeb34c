"""The client (CLI client commands and the SDK) imports only the base install's libraries:
`pip install corral` without extras gives a CLI that works, and `corral ls` does not wait for
the server stack (FastAPI, SQLAlchemy, numpy) to import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_LIBRARIES = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg",
                    "numpy", "scipy", "prometheus-client"}
CLIENT_MODULES = ["corral.cli.main", "corral.sdk", "corral.sdk.ledger",
                  # `corral schema` and the file models it is made from (issue 14)
                  "corral.cli.schema", "corral.spec.pool", "corral.spec.workload"]
# imported when present, skipped when not: httpx loads its own CLI (click) inside try/except;
# cython_runtime is the interpreter's, not a distribution
OPTIONAL = {"click", "cython_runtime"}


def _imported_after(*modules: str) -> set[str]:
    """Top-level names in sys.modules after importing `modules` in a fresh interpreter."""
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return set(json.loads(out.stdout))


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _base_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [_name(r) for r in project["dependencies"]]


def _closure(names: list[str]) -> set[str]:
    """The distributions these need, transitively (requirements without an extra marker)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # a platform's own (colorama on Windows)
            continue
        for req in requires:
            if "extra ==" not in req:
                todo.append(_name(req))
    return seen


def test_importing_the_cli_leaves_out_the_server_stack() -> None:
    loaded = _imported_after("corral.cli.main")
    assert "typer" in loaded and "httpx" in loaded  # the probe sees what the CLI does import
    assert not loaded & {"fastapi", "sqlalchemy", "numpy", "uvicorn", "alembic", "starlette"}


def test_the_cli_main_module_leaves_out_the_core_and_the_api() -> None:
    code = ("import sys, corral.cli.main\n"
            "print(sorted(m for m in sys.modules if m.startswith(('corral.core', 'corral.api', "
            "'corral.store', 'corral.control', 'corral.cli.server', 'corral.cli.up'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_base_install_holds_no_server_library() -> None:
    base = _base_dependencies()
    assert {"httpx", "typer", "rich", "pydantic", "pyyaml"} <= set(base)
    assert not set(base) & SERVER_LIBRARIES


def test_client_modules_import_nothing_outside_the_base_install() -> None:
    allowed = _closure(_base_dependencies())
    by_module = metadata.packages_distributions()
    third_party = _imported_after(*CLIENT_MODULES) - set(sys.stdlib_module_names) - {"corral"}
    outside = {m: by_module.get(m, ["?"]) for m in third_party
               if not m.startswith("_") and m not in OPTIONAL and not {_name(d) for d in by_module.get(m, [])} & allowed}
    assert outside == {}


def test_the_schemas_are_made_without_the_server_stack() -> None:
    """`corral schema workload|pool` on a client-only install: making both schemas, and checking
    a pool file that names no score plugin, loads neither numpy nor the server libraries."""
    code = ("import json, sys\n"
            "from corral.cli.schema import Which, render\n"
            "from corral.spec import PoolSpec\n"
            "assert all(render(w) for w in Which)\n"
            "PoolSpec.model_validate({'queues': [{'name': 'research', 'quota_gpus': 8}],"
            " 'autoscaler': {'move_premium': 0.5}})\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert not set(json.loads(out.stdout)) & SERVER_LIBRARIES


@pytest.mark.parametrize("command", ["up", "plan", "simulate", "db"])
def test_server_commands_are_listed_and_load_when_run(command: str) -> None:
    out = subprocess.run([sys.executable, "-m", "corral.cli.main", command, "--help"],
                         capture_output=True, text=True, cwd=ROOT, env={"COLUMNS": "120",
                         "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert re.search(rf"Usage: .* {command} \[OPTIONS\]", out.stdout), out.stdout
    listing = subprocess.run([sys.executable, "-m", "corral.cli.main", "--help"],
                             capture_output=True, text=True, cwd=ROOT,
                             env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}).stdout
    assert re.search(rf"│ {command}\s", listing)


# Issue 14: the start of every client command (< 300 ms of import on 2 cores): what `corral
# --help` and `corral ls` load stays the client's own, with nothing they do not use.
NOT_FOR_CLIENT_COMMANDS = {"yaml",  # submit reads a file: it imports PyYAML then
                           "click", "pygments"}  # httpx's own command line (corral.cli)
# typer renders help with rich's Markdown, which brings pygments: only for help
NOT_FOR_HELP = NOT_FOR_CLIENT_COMMANDS - {"pygments"}


def _loaded_by_command(*argv: str) -> set[str]:
    code = ("import json, sys\n"
            f"sys.argv = ['corral', *{list(argv)!r}]\n"
            "from corral.cli.main import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('\\n' + json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin",
                                                    "HOME": str(ROOT / "no-such-home")})
    return set(json.loads(out.stdout.rsplit("\n", 2)[-2]))


@pytest.mark.parametrize(("argv", "unused"), [
    (["--help"], NOT_FOR_HELP),
    (["queues", "--help"], NOT_FOR_HELP),
    (["ls", "--url", "http://127.0.0.1:9"], NOT_FOR_CLIENT_COMMANDS),
    (["describe", "x", "--url", "http://127.0.0.1:9"], NOT_FOR_CLIENT_COMMANDS),
], ids=["help", "queues-help", "ls", "describe"])
def test_client_commands_leave_out_what_they_do_not_use(argv: list[str],
                                                        unused: set[str]) -> None:
    loaded = _loaded_by_command(*argv)
    assert "typer" in loaded and "httpx" in loaded  # the probe sees what the command loads
    assert not loaded & (unused | SERVER_LIBRARIES)


def test_the_wire_types_are_built_when_first_used() -> None:
    """pydantic builds a model's validator on first use (defer_build): importing the SDK does
    not pay for the ~60 types a command mostly never touches."""
    code = ("from corral.sdk import models as M\n"
            "assert not M.Workload.__pydantic_complete__\n"
            "page = M.WorkloadPage.model_validate({'items': [], 'next_cursor': None})\n"
            "assert M.WorkloadPage.__pydantic_complete__ and page.items == []\n"
            "assert not M.NodeInfo.__pydantic_complete__\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
