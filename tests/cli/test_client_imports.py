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
CLIENT_MODULES = ["corral.cli.main", "corral.sdk", "corral.sdk.ledger", "corral.sdk.builder",
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
    assert "typer" in loaded and "rich" in loaded  # the probe sees what the CLI does import
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


# Issue 14: the start of every client command (< 300 ms of import on 2 cores). A command module
# imports the SDK's client (httpx) and wire types (pydantic models) when the command runs, so
# `--help` and the listing load neither; what the commands load stays the client's own.
NOT_FOR_CLIENT_COMMANDS = {"yaml",  # submit reads a file: it imports PyYAML then
                           "click", "pygments"}  # httpx's own command line (corral.cli)
# typer renders help with rich's Markdown, which brings pygments: only for help
NOT_FOR_HELP = NOT_FOR_CLIENT_COMMANDS - {"pygments"} | {"httpx", "corral.sdk.client",
                                                          "corral.sdk.models", "corral.sdk.ledger"}
# the top-level help coerces no parameter: no pydantic either (typer 0.29 coerces a command's
# parameters, --help's included, with pydantic TypeAdapters: `corral ls --help` loads pydantic)
NOT_FOR_TOP_HELP = NOT_FOR_HELP | {"pydantic"}


def _loaded_by_command(*argv: str) -> set[str]:
    """Every module (dotted names and their top-level packages) a command leaves loaded; not
    the ones marked absent (corral.cli marks httpx._main so)."""
    code = ("import json, sys\n"
            f"sys.argv = ['corral', *{list(argv)!r}]\n"
            "from corral.cli.main import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('\\n' + json.dumps(sorted(n for n, m in sys.modules.items() if m)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin",
                                                    "HOME": str(ROOT / "no-such-home")})
    names = set(json.loads(out.stdout.rsplit("\n", 2)[-2]))
    return names | {n.split(".")[0] for n in names}


@pytest.mark.parametrize(("argv", "used", "unused"), [
    (["--help"], {"typer", "rich"}, NOT_FOR_TOP_HELP),
    (["queues", "--help"], {"typer", "rich"}, NOT_FOR_HELP),
    (["ls", "--help"], {"typer", "rich"}, NOT_FOR_HELP),
    (["credits", "--help"], {"typer", "rich"}, NOT_FOR_HELP),
    (["submit", "--help"], {"typer", "rich"}, NOT_FOR_HELP),
    (["ls", "--url", "http://127.0.0.1:9"], {"httpx", "corral.sdk.models"},
     NOT_FOR_CLIENT_COMMANDS),
    (["describe", "x", "--url", "http://127.0.0.1:9"], {"httpx", "corral.sdk.models"},
     NOT_FOR_CLIENT_COMMANDS),
], ids=["help", "queues-help", "ls-help", "credits-help", "submit-help", "ls", "describe"])
def test_client_commands_leave_out_what_they_do_not_use(argv: list[str], used: set[str],
                                                        unused: set[str]) -> None:
    loaded = _loaded_by_command(*argv)
    assert used <= loaded  # the probe sees what the command does load
    assert not loaded & (unused | SERVER_LIBRARIES)


def test_importing_the_cli_loads_neither_the_client_nor_the_wire_types() -> None:
    """`import corral.cli.main` (every command registered) loads no httpx, no pydantic and none
    of the SDK's modules that need them: the commands import them when they run."""
    code = ("import json, sys, corral.cli.main\n"
            "print(json.dumps(sorted(n for n, m in sys.modules.items() if m)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout))
    assert "corral.cli.workloads" in loaded and "corral.cli.credits" in loaded
    assert not loaded & {"httpx", "pydantic", "pygments", "corral.sdk.client", "corral.sdk.models",
                         "corral.sdk.ledger", "corral.spec.errors", "corral.spec.quantities"}


@pytest.mark.parametrize(("statement", "absent"), [
    ("from corral.sdk import models", {"httpx", "click", "pygments", "corral.sdk.client"}),
    ("from corral.sdk import CorralError, NotFound, ConfigError", {"httpx", "pydantic"}),
    ("import corral.sdk", {"httpx", "pydantic"}),
], ids=["models", "errors", "package"])
def test_the_sdk_imports_what_is_asked_for(statement: str, absent: set[str]) -> None:
    """The package's names are imported on first use: a program that wants the wire types does
    not import httpx (and httpx's own command line: click, pygments)."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert not set(json.loads(out.stdout)) & absent


def test_the_wire_types_are_built_when_first_used() -> None:
    """pydantic builds a model's validator on first use (defer_build): importing the SDK does
    not pay for the ~60 types a command mostly never touches."""
    code = ("from corral.sdk import models as M\n"
            "assert not M.Workload.__pydantic_complete__\n"
            "page = M.WorkloadPage.model_validate({'items': [], 'next_cursor': None})\n"
            "assert M.WorkloadPage.__pydantic_complete__ and page.items == []\n"
            "assert not M.NodeInfo.__pydantic_complete__\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
