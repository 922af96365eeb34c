"""Spec errors: every problem as (field path, what is wrong and how to fix it).

SpecError(ValueError)          a file or request that does not describe valid corral objects
  └── carries .problems: [(path like "workloads[2].gpus", message)]
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class SpecError(ValueError):
    def __init__(self, problems: Sequence[tuple[str, str]], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = [
            f"{where}{path}: {msg}" if path else f"{where}{msg}" for path, msg in self.problems
        ]
        super().__init__("\n".join(lines))

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "", source: str = "") -> SpecError:
        problems = []
        for err in exc.errors():
            path = _path(prefix, err["loc"])
            problems.append((path, _message(err)))
        return cls(problems, source)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"field": p, "message": m} for p, m in self.problems]


#: the error type of `corral.spec.limits` problems (the input is not repeated: it may be huge)
LIMIT_ERROR = "spec_limit"
_NUMBER_TYPES = frozenset({"float_type", "int_type", "float_parsing", "int_parsing"})


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or part in {"str", "int", "float"}:
            continue  # pydantic's internal validator names are noise to a user
        else:
            out += f".{part}" if out else part
    return out


def _message(err: object) -> str:
    assert isinstance(err, dict)
    kind, msg = err.get("type", ""), str(err.get("msg", ""))
    msg = msg.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field; check its spelling against the documented fields (docs/specs.md)"
    if kind == "missing":
        return "required field is missing"
    shown_input = err.get("input")
    if kind in _NUMBER_TYPES and isinstance(shown_input, bool):
        return "expected a number, not true or false"
    if kind in _NUMBER_TYPES and isinstance(shown_input, str):
        return f"expected a number, not the string {shown_input[:40]!r}"
    if kind in _NUMBER_TYPES and isinstance(shown_input, int):
        return "the number is too large"
    if kind == "string_type" and isinstance(shown_input, bool | int | float):
        # YAML reads `1e3`, `007`, `yes` or `2024` as a number or a boolean before pydantic sees it
        what = "true or false" if isinstance(shown_input, bool) else f"the number {shown_input!r}"
        return f"expected a string, not {what}: put the value in quotes to keep it text"
    if kind == "finite_number":
        return "must be a finite number (not Infinity or NaN)"
    if kind == LIMIT_ERROR:
        return msg
    if "input" in err and kind not in {"missing"}:
        shown = repr(err["input"])
        if len(shown) < 60 and "got" not in msg:
            msg = f"{msg} (got {shown})"
    return msg
