"""Reading tabular trace files (CSV, or Parquet when pyarrow is installed) with clear errors.

A `Rows` object checks the header once, then hands out typed values; every error names the file,
the line (as a spreadsheet shows it: the header is line 1), the column and what was expected.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.sim.trace import TraceFormatError


@dataclass(frozen=True)
class Rows:
    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def require(self, columns: Sequence[str], what: str) -> None:
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise TraceFormatError(
                f"{self.path.name}: {what} lacks column(s) {', '.join(map(repr, missing))}; "
                f"found {', '.join(self.header) or 'no header'}; required: {', '.join(columns)}"
            )

    def has(self, column: str) -> bool:
        return column in self.header

    def __iter__(self) -> Iterator[Row]:
        index = {c: i for i, c in enumerate(self.header)}
        for n, values in enumerate(self.rows, start=2):
            yield Row(self.path.name, n, index, values)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, slots=True)
class Row:
    file: str
    line: int
    index: dict[str, int]
    values: tuple[str, ...]

    def text(self, column: str, default: str = "") -> str:
        i = self.index.get(column)
        if i is None or i >= len(self.values):
            return default
        return self.values[i].strip()

    def integer(
        self, column: str, lo: int = 0, hi: int | None = None, default: int | None = None
    ) -> int:
        raw = self.text(column)
        if raw == "" and default is not None:
            return default
        value = _as_int(raw)
        if value is None or value < lo or (hi is not None and value > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
            raise self.error(column, raw, f"an integer {bound}")
        return value

    def number(self, column: str, lo: float = 0.0, optional: bool = False) -> float | None:
        raw = self.text(column)
        if raw == "" and optional:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or value != value or value < lo:  # NaN fails value != value
            empty = " or empty" if optional else ""
            raise self.error(column, raw, f"a number of at least {lo:g}{empty}")
        return value

    def error(self, column: str, raw: str, expected: str) -> TraceFormatError:
        shown = repr(raw) if raw else "an empty value"
        return TraceFormatError(
            f"{self.file} line {self.line}: column {column!r} must be {expected}, got {shown}"
        )


def _as_int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)  # "8000.0" from tools that write every number as a float
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def read_rows(path: str | Path) -> Rows:
    """Read a CSV file (or .parquet with pyarrow installed) into string rows."""
    p = Path(path)
    if not p.is_file():
        raise TraceFormatError(f"{p}: no such file (give the path of a trace CSV file)")
    if p.suffix.lower() in {".parquet", ".pq"}:
        return _read_parquet(p)
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = tuple(h.strip() for h in next(reader))
        except StopIteration:
            raise TraceFormatError(
                f"{p.name}: the file is empty (expected a CSV header line)"
            ) from None
        except csv.Error as e:
            raise TraceFormatError(f"{p.name}: not a readable CSV file ({e})") from None
        try:
            rows = tuple(tuple(r) for r in reader if any(cell.strip() for cell in r))
        except csv.Error as e:
            raise TraceFormatError(f"{p.name} line {reader.line_num}: not valid CSV ({e})") from None
    return Rows(p, header, rows)


def _read_parquet(p: Path) -> Rows:
    try:
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise TraceFormatError(
            f"{p.name}: reading Parquet needs pyarrow (pip install pyarrow), or convert the file "
            "to CSV with the same columns"
        ) from None
    table = pq.read_table(p)
    header = tuple(str(c) for c in table.column_names)
    columns = [table.column(c).to_pylist() for c in header]
    rows = tuple(
        tuple("" if v is None else str(v) for v in values) for values in zip(*columns, strict=True)
    )
    return Rows(p, header, rows)
