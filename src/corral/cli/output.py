"""`-o table|wide|plain|json|ids` on list commands (kubectl's habit).

    table  the default: a rich table fitted to the terminal; IDs are never wrapped or cut
           (their column is as wide as the longest ID; other columns fold); when even that
           does not fit, the plain layout
    wide   the table with more columns
    plain  the same columns, space-aligned, no borders, colours or wrapping (for grep/awk)
    json   the objects, as the API returns them
    ids    one ID (or name) per line, for xargs and loops
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # an annotation only: `--help` does not import pydantic (issue 14)
    from pydantic import BaseModel

__all__ = ["Format", "OutputOpt", "emit", "plain"]


class Format(enum.StrEnum):
    TABLE = "table"
    WIDE = "wide"
    PLAIN = "plain"
    JSON = "json"
    IDS = "ids"


OutputOpt = Annotated[Format | None, typer.Option(
    "--output", "-o", case_sensitive=False,
    help="table (default), wide (more columns), plain (no borders, for grep and awk), json, "
    "or ids (one per line)")]


def chosen(output: Format | None, json_out: bool) -> Format:
    """`--json` is `-o json` (kept for scripts written before -o)."""
    return Format.JSON if json_out else (output or Format.TABLE)


def emit(out: Console, fmt: Format, items: Sequence[BaseModel], table: Table,
         ids: Sequence[str]) -> None:
    import json

    if fmt is Format.JSON:
        typer.echo(json.dumps([i.model_dump() for i in items], indent=2, default=str))
    elif fmt is Format.IDS:
        for i in ids:
            typer.echo(i)
    elif fmt is Format.PLAIN or not fits(out, table):
        typer.echo(plain(table), nl=False)
    else:
        out.print(table)


def fits(out: Console, table: Table) -> bool:
    """Whether the table fits the terminal with its IDs whole and its headers unbroken; when
    it does not (long IDs at 80 columns), the plain layout is printed instead: lines longer
    than the terminal, but nothing cut (rich would crop the table's right-hand columns)."""
    return table.__rich_measure__(out, out.options).minimum <= out.width


def _cell(value: Any) -> str | None:
    if isinstance(value, Text):
        return value.plain
    if isinstance(value, str):
        return value
    return None  # a bar or another drawing: not text


def plain(table: Table) -> str:
    """The table's text columns, aligned with two spaces, one row per line, never wrapped."""
    columns = []
    for col in table.columns:
        cells = [_cell(c) for c in col.cells]
        header = _cell(col.header) or ""
        if header and all(c is not None for c in cells):
            columns.append([header, *(c or "" for c in cells)])
    if not columns:
        return ""
    widths = [max(len(c) for c in col) for col in columns]
    lines = []
    for row in zip(*columns, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"
