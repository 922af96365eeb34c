"""Human quantities in specs: sizes ("80GiB", "512Mi", 1024), durations ("30m", "2h", 90).

Plain numbers mean MiB for sizes and seconds for durations. Parsing errors name the accepted forms,
so the user knows the fix.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[kmgt]i?b?)?\s*$")
_SIZE_MIB = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_S = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size_mib(value: object) -> int:
    """'80GiB' -> 81920; 512 -> 512 (MiB); '1.5G' -> 1536. Decimal units count as binary."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 80GiB, 512MiB or a number of MiB")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = (m.group(2) or "").upper()[:1]
            return round(float(m.group(1)) * _SIZE_MIB[unit])
    raise ValueError(f"{value!r} is not a size; write it like 80GiB, 512MiB or 1024 (MiB)")


def parse_duration_s(value: object) -> float:
    """'30m' -> 1800.0; '2h' -> 7200.0; 90 -> 90.0 (seconds)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 2h or a number of seconds")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_S[m.group(2) or ""]
    raise ValueError(f"{value!r} is not a duration; write it like 90s, 30m, 2h or 1d")


def _cores_to_milli(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected CPU cores such as 4, 0.5 or '500m'")
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a CPU amount; write cores (4, 0.5) or millicores ('500m')"
            ) from None
    if value < 0:
        raise ValueError("CPU cannot be negative")
    return round(value * 1000)


SizeMiB = Annotated[int, BeforeValidator(parse_size_mib)]
DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
CpuMilli = Annotated[int, BeforeValidator(_cores_to_milli)]
