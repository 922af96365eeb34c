"""Shell completion (typer's --install-completion / --show-completion, lazy commands included),
`usage --since 1h|yesterday|ISO` (corral.cli.when) and the GPU-hours of usage's total row."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import typer
from typer.testing import CliRunner

from corral.cli import credits
from corral.cli.main import app
from corral.cli.when import past_time
from corral.sdk import Client

NOW = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC).timestamp()
MIDNIGHT = dt.datetime(2026, 12, 3, tzinfo=dt.UTC).timestamp()


def _complete(words: str) -> list[str]:
    """What bash completion offers for `words` (the last one being typed)."""
    env = {**os.environ, "_CORRAL_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    code = "from corral.cli.main import app; app(prog_name='corral')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_completion_offers_commands_subcommands_and_lazy_ones() -> None:
    assert _complete("corral con") == ["context"]
    assert _complete("corral context u") == ["use"]
    assert _complete("corral sim") == ["simulate"]  # a lazy command, listed by name


def test_show_completion_prints_a_script_for_the_shell() -> None:
    code = "from corral.cli.main import app; app(prog_name='corral')"
    out = subprocess.run([sys.executable, "-c", code, "--show-completion", "bash"],
                         capture_output=True, text=True, timeout=60,
                         # typer detects the user's shell from the parent process (shellingham),
                         # which CI's detached runner does not have: its own switch makes the
                         # option take the shell by name instead.
                         env={**os.environ, "COLUMNS": "120",
                              "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert out.returncode == 0, out.stderr
    assert "_CORRAL_COMPLETE=complete_bash" in out.stdout
    assert "complete -o default -F _corral_completion corral" in out.stdout


@pytest.mark.parametrize(("text", "expected"), [
    ("1h", NOW - 3600), ("30m", NOW - 1800), ("90s", NOW - 90), ("2d", NOW - 2 * 86400),
    ("1w", NOW - 7 * 86400), ("1.5H", NOW - 5400), ("now", NOW), ("today", MIDNIGHT),
    ("yesterday", MIDNIGHT - 86400), ("2026-12-01", MIDNIGHT - 2 * 86400),
    ("2026-12-01T18:00:00Z", MIDNIGHT - 2 * 86400 + 18 * 3600),
    ("2026-12-01T18:00:00+01:00", MIDNIGHT - 2 * 86400 + 17 * 3600),
    ("1767225600", 1767225600.0),
], ids=lambda v: str(v))
def test_since_forms(text: str, expected: float) -> None:
    assert past_time(text, "--since", NOW) == expected


@pytest.mark.parametrize("text", ["last week", "1y", "nan", "inf", "-", "2026-13-01"])
def test_a_time_that_is_not_one_names_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(typer.BadParameter) as e:
        past_time(text, "--since", NOW)
    assert e.value.param_hint == "--since" and "yesterday" in str(e.value)


REPORT = {"by": ["queue"], "currency": "USD", "total_gpu_seconds": "9000", "total_cost": "5.00",
          "rows": [{"group": {"queue": "a"}, "gpu_seconds": "5400", "gpu_hours": "1.500000",
                    "cost": "3.00"},
                   {"group": {"queue": "b"}, "gpu_seconds": "3600", "gpu_hours": "1.000000",
                    "cost": "2.00"}]}


def test_usage_window_and_the_gpu_hours_of_the_total_row(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(parse_qs(urlsplit(str(request.url)).query))
        return httpx.Response(200, json=REPORT)

    monkeypatch.setattr(credits, "connect", lambda url, token: Client(
        "http://corral.test", transport=httpx.MockTransport(handler)))
    monkeypatch.setattr(time, "time", lambda: NOW)  # the instant usage reads
    r = CliRunner().invoke(app, ["usage", "--by", "queue", "--since", "yesterday", "--until",
                                 "1h"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert float(asked[0]["since"][0]) == MIDNIGHT - 86400
    assert float(asked[0]["until"][0]) == NOW - 3600
    total = next(line for line in r.output.splitlines() if "total" in line)
    assert "2.500000" in total and "9000" in total and "5.00" in total
    refused = CliRunner().invoke(app, ["usage", "--since", "last week"], env={"COLUMNS": "120"})
    assert refused.exit_code == 2 and "--since" in refused.output
