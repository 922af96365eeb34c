"""Hostile and careless specs (issue 15, items 1, 3, 7): every one is refused at submission with
a message naming the field, never accepted to fail at launch, never an overflow later."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from corral.cli.main import app
from corral.control.submission import stored_form
from corral.ledger.errors import LedgerInputError
from corral.ledger.money import DEFAULT_CURRENCY
from corral.spec import PoolSpec, SpecError, WorkloadSpec
from corral.spec.ledger import PriceSpec
from corral.spec.load import MAX_FILE_BYTES, read_document

OK = {"name": "train", "queue": "research", "command": ["python", "train.py"]}
INF, NAN = float("inf"), float("nan")

# (id, fields, the field blamed, a word of the message)
REFUSED = [
    ("gpus-1e308", {"gpus": 1e308}, "gpus", "1024"),
    ("gpus-2**64", {"gpus": 2**64}, "gpus", "1024"),
    ("gpus-10**400", {"gpus": 10**400}, "gpus", "too large"),
    ("gpus-inf", {"gpus": INF}, "gpus", "finite"),
    ("gpus-nan", {"gpus": NAN}, "gpus", "finite"),
    ("gpus-1e999-string", {"gpus": "1e999"}, "gpus", "number"),
    ("gpus-true", {"gpus": True}, "gpus", "not true or false"),
    ("workers-true", {"workers": True}, "workers", "not true or false"),
    ("workers-string", {"workers": "2"}, "workers", "number"),
    ("gpus-over-limit", {"gpus": 2048}, "gpus", "1024"),
    ("memory-1e308", {"memory": 1e308}, "memory", "1 PiB"),
    ("memory-2**64", {"memory": 2**64}, "memory", "1 PiB"),
    ("memory-inf", {"memory": INF}, "memory", "1 PiB"),
    ("memory-nan", {"memory": NAN}, "memory", "NaN"),
    ("memory-1e999", {"memory": "1e999"}, "memory", "80GiB"),
    ("memory-400-digits", {"memory": "9" * 400 + "GiB"}, "memory", "80GiB"),
    ("gpu-memory-inf", {"gpus": 0.5, "gpu_memory": INF}, "gpu_memory", "1 PiB"),
    ("gpu-memory-2**64", {"gpus": 0.5, "gpu_memory": 2**64}, "gpu_memory", "1 PiB"),
    ("cpu-inf", {"cpu": INF}, "cpu", "10,000 cores"),
    ("cpu-1e308", {"cpu": 1e308}, "cpu", "10,000 cores"),
    ("cpu-nan", {"cpu": NAN}, "cpu", "NaN"),
    ("cpu-negative-milli", {"cpu": "-500m"}, "cpu", "not negative"),
    ("cpu-negative", {"cpu": -1}, "cpu", "negative"),
    ("min-runtime-inf", {"min_runtime": INF}, "min_runtime", "366 days"),
    ("min-runtime-huge", {"min_runtime": "9" * 30 + "d"}, "min_runtime", "30m"),
    ("max-runtime-nan", {"max_runtime": NAN}, "max_runtime", "NaN"),
    ("price-inf", {"max_price_per_gpu_hour": INF}, "max_price_per_gpu_hour", "finite"),
    ("price-nan", {"max_price_per_gpu_hour": NAN}, "max_price_per_gpu_hour", "finite"),
    ("name-newline", {"name": "train\n"}, "name", "lowercase"),
    ("queue-newline", {"queue": "research\n"}, "queue", "lowercase"),
    ("nul-in-arg", {"command": ["python", "a\x00b"]}, "command[1]", "NUL"),
    ("nul-in-program", {"command": ["py\x00thon"]}, "command[0]", "NUL"),
    ("nul-in-shell", {"command": None, "shell": "echo \x00"}, "shell", "NUL"),
    ("nul-in-env-value", {"env": {"A": "x\x00"}}, "env.A", "NUL"),
    ("nul-in-env-key", {"env": {"A\x00B": "x"}}, "env", "NUL"),
    ("nul-in-working-dir", {"working_dir": "/tmp/\x00"}, "working_dir", "NUL"),
    ("nul-in-checkpoint-dir", {"checkpoint_dir": "/ck\x00"}, "checkpoint_dir", "NUL"),
    ("nul-in-gpu-model", {"gpu_models": ["H1\x0000"]}, "gpu_models[0]", "NUL"),
    ("lone-surrogate", {"command": ["echo", "\ud800"]}, "command[1]", "Unicode"),
    ("env-key-with-equals", {"env": {"A=B": "1"}}, "env", "'='"),
    ("env-key-empty", {"env": {"": "1"}}, "env", "empty"),
    ("too-many-args", {"command": ["x"] * 2000}, "command", "at most 1024"),
    ("too-many-env", {"env": {f"K{i}": "v" for i in range(300)}}, "env", "at most 256"),
    ("arg-too-long", {"command": ["x", "y" * 20_000]}, "command[1]", "at most 16384"),
    ("spec-over-64k", {"env": {f"K{i}": "v" * 1000 for i in range(100)}}, "", "64 KiB"),
]


@pytest.mark.parametrize("fields,field,word", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_with_the_field_named(fields: dict[str, object], field: str, word: str) -> None:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate({**OK, **fields})
    err = SpecError.from_validation(info.value, prefix="w")
    paths = [p for p, _ in err.problems]
    assert (f"w.{field}" if field else "w") in paths, err.problems
    assert word in str(err), str(err)


def test_a_stored_spec_is_read_back_without_the_submission_rules() -> None:
    """A row accepted before these rules existed must load, so it cannot stop the loop."""
    spec = WorkloadSpec.from_stored({**OK, "name": "old\n", "command": ["a\x00"]})
    assert spec.command == ["a\x00"]
    valid = WorkloadSpec.model_validate({**OK, "cpu": "250m", "gpus": 0.5})
    assert WorkloadSpec.from_stored(stored_form(valid)) == valid


def test_ordinary_quantities_still_parse() -> None:
    spec = WorkloadSpec.model_validate({**OK, "gpus": 8, "cpu": "500m", "memory": "64GiB",
                                        "min_runtime": "2h", "max_price_per_gpu_hour": 4})
    assert (spec.gpus, spec.cpu, spec.memory, spec.min_runtime) == (8.0, 500, 65536, 7200.0)
    assert WorkloadSpec.model_validate({**OK, "cpu": 2}).cpu == 2000


@pytest.mark.parametrize("amount", ["1e400", "1e30", "-1e20"])
def test_huge_grant_amounts_are_field_errors(amount: str) -> None:
    with pytest.raises(LedgerInputError) as info:
        DEFAULT_CURRENCY.amount(amount, "amount")
    assert info.value.field == "amount" and "too large" in str(info.value)


@pytest.mark.parametrize("price", ["1e400", "Infinity", "NaN", 1e308])
def test_price_rules_are_finite_and_bounded(price: object) -> None:
    with pytest.raises(ValidationError, match="price_per_gpu_hour"):
        PriceSpec.model_validate({"price_per_gpu_hour": price})


@pytest.mark.parametrize("pool", [
    {"queues": [{"name": "a", "quota_gpus": INF}]},
    {"queues": [{"name": "a", "weight": NAN}]},
    {"providers": [{"name": "p", "prices": {"H100": INF}}]},
], ids=["quota-inf", "weight-nan", "price-inf"])
def test_pool_numbers_are_finite(pool: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PoolSpec.model_validate(pool)


# --- hostile files (item 7) --------------------------------------------------------------------

def _laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"name: x\nqueue: default\ncommand: *a{levels}\n"])


HOSTILE_FILES = [
    ("billion-laughs", _laughs(), "expands to more than"),
    ("recursive-alias", "name: &a [x, *a]\n", "refers to the value that contains it"),
    ("deep-nesting", "name: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper"),
    ("gpus-inf", "name: x\nqueue: default\ngpus: .inf\n", "gpus: inf is not a finite number"),
    ("nan-in-list", "workloads:\n  - {name: x, gpus: .nan}\n", "workloads[0].gpus: nan"),
    ("not-utf8", b"name: \xff\xfe\n", "not UTF-8"),
]


@pytest.mark.parametrize("text,message", [f[1:] for f in HOSTILE_FILES],
                         ids=[f[0] for f in HOSTILE_FILES])
def test_hostile_files_are_refused_with_one_message(tmp_path: Path, text: str | bytes,
                                                    message: str) -> None:
    f = tmp_path / "w.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SpecError) as info:
        read_document(f)
    assert message in str(info.value) and len(info.value.problems) == 1


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(SpecError, match="larger than"):
        read_document(f)


def test_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text("base: &b {queue: q, gpus: 1}\nworkloads:\n  - {<<: *b, name: a}\n"
                 "  - {<<: *b, name: b}\n")
    data = read_document(f)
    assert [w["gpus"] for w in data["workloads"]] == [1, 1]


runner = CliRunner()


@pytest.mark.parametrize("text,message", [f[1:] for f in HOSTILE_FILES[:4]],
                         ids=[f[0] for f in HOSTILE_FILES[:4]])
def test_cli_submit_prints_one_error_and_no_traceback(tmp_path: Path, text: str,
                                                      message: str) -> None:
    f = tmp_path / "w.yaml"
    f.write_text(text)
    result = runner.invoke(app, ["submit", str(f), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
