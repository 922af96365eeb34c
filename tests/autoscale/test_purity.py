"""The pool autoscaler is a policy beside the core: it imports only the core, the providers'
value types and the standard library's pure parts, and reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corral.autoscale

ALLOWED_CORRAL = ("corral.core", "corral.providers.base", "corral.providers.errors",
                  "corral.autoscale")
FORBIDDEN_TOP = {"os", "time", "datetime", "random", "socket", "subprocess", "threading",
                 "asyncio", "pathlib", "io", "sqlite3", "uuid", "secrets"}
MODULES = sorted(Path(corral.autoscale.__file__).parent.glob("*.py"))


def imported(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def offences(source: str) -> list[str]:
    out = []
    for name in imported(source):
        top = name.split(".")[0]
        if top in FORBIDDEN_TOP or (top == "corral" and not name.startswith(ALLOWED_CORRAL)):
            out.append(name)
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_autoscaler_modules_are_pure(path: Path) -> None:
    assert offences(path.read_text()) == []


@pytest.mark.parametrize("source, bad", [
    ("import time", ["time"]),
    ("from corral.store.database import Database", ["corral.store.database"]),
    ("from corral.providers.aws import AwsProvider", ["corral.providers.aws"]),
    ("from corral.core.model import Node", []),
])
def test_checker_catches(source: str, bad: list[str]) -> None:
    assert offences(source) == bad
