"""corral.serving is a policy beside the core: standard library's pure parts, numpy, pydantic and
itself; no clock, no I/O, no random numbers, nothing from the layers above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corral.serving

ALLOWED_TOP = {"__future__", "collections", "dataclasses", "enum", "math", "typing", "numpy",
               "pydantic", "corral"}
MODULES = sorted(Path(corral.serving.__file__).parent.glob("*.py"))


def offences(source: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            top = name.split(".")[0]
            if top not in ALLOWED_TOP or (top == "corral" and not name.startswith("corral.serving")):
                out.append(name)
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_serving_modules_are_pure(path: Path) -> None:
    assert offences(path.read_text()) == []


@pytest.mark.parametrize("source, bad", [
    ("import time", ["time"]),
    ("from random import random", ["random"]),
    ("from datetime import datetime", ["datetime"]),
    ("from corral.store.database import Database", ["corral.store.database"]),
    ("from corral.serving.config import Target", []),
    ("import numpy as np", []),
])
def test_checker_catches(source: str, bad: list[str]) -> None:
    assert offences(source) == bad


def test_public_surface() -> None:
    assert sorted(corral.serving.__all__) == sorted([
        "HELD", "SCALED_DOWN", "SCALED_TO_ZERO", "SCALED_UP", "Behavior", "Decision", "Proposal",
        "RateLimit", "ScalingConfig", "Select", "ServiceScaler", "Target", "TargetKind"])
