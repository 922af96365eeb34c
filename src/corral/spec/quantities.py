"""Human quantities in specs: sizes ("80GiB", "512Mi", 1024), durations ("30m", "2h", 90).

Plain numbers mean MiB for sizes and seconds for durations. Parsing errors name the accepted forms,
so the user knows the fix. Every quantity is finite, not negative and bounded
(`corral.spec.limits`): 1e308, Infinity, NaN and "1e999" are refused here, by the field they
were given for, never later as an overflow somewhere else.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

from corral.spec.limits import MAX_CPU_MILLI, MAX_DURATION_S, MAX_SIZE_MIB

_SIZE = re.compile(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*([KMGT]i?B?|[kmgt]i?b?)?\s*")
_SIZE_MIB = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024}
_DURATION = re.compile(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*(ms|s|m|h|d)?\s*")
_DURATION_S = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CPU = re.compile(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*(m?)\s*")


def _number(value: int | float, what: str, most: float, largest: str) -> float:
    """A finite, non-negative number no larger than `most` (ints too large for a float too)."""
    if isinstance(value, int) and abs(value) > 2**63:
        value = math.inf if value > 0 else -math.inf
    if math.isnan(value):
        raise ValueError(f"{what} must be a number, not NaN")
    if value < 0:
        raise ValueError(f"{what} cannot be negative")
    if value > most:
        raise ValueError(f"{what} must be at most {largest}")
    return float(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...' ({len(str(value))} characters)"


def parse_size_mib(value: object) -> int:
    """'80GiB' -> 81920; 512 -> 512 (MiB); '1.5G' -> 1536. Decimal units count as binary."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 80GiB, 512MiB or a number of MiB")
    if isinstance(value, int | float):
        return int(_number(value, "a size", MAX_SIZE_MIB, "1 PiB"))
    if isinstance(value, str):
        m = _SIZE.fullmatch(value)
        if m:
            unit = (m.group(2) or "").upper()[:1]
            mib = _number(float(m.group(1)) * _SIZE_MIB[unit], "a size", MAX_SIZE_MIB,
                          "1 PiB")
            return round(mib)
    raise ValueError(f"{_shown(value)} is not a size; write it like 80GiB, 512MiB or 1024 (MiB)")


def parse_duration_s(value: object) -> float:
    """'30m' -> 1800.0; '2h' -> 7200.0; 90 -> 90.0 (seconds)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 2h or a number of seconds")
    if isinstance(value, int | float):
        return _number(value, "a duration", MAX_DURATION_S, "366 days")
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m:
            seconds = float(m.group(1)) * _DURATION_S[m.group(2) or ""]
            return _number(seconds, "a duration", MAX_DURATION_S, "366 days")
    raise ValueError(f"{_shown(value)} is not a duration; write it like 90s, 30m, 2h or 1d")


def _cores_to_milli(value: object) -> int:
    """4 -> 4000; 0.5 -> 500; '500m' -> 500; '2' -> 2000."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected CPU cores such as 4, 0.5 or '500m'")
    if isinstance(value, str):
        m = _CPU.fullmatch(value)
        if not m:
            raise ValueError(
                f"{_shown(value)} is not a CPU amount; write cores (4, 0.5) or millicores ('500m'), "
                "not negative")
        milli = float(m.group(1)) * (1 if m.group(2) else 1000)
    else:
        milli = _number(value, "CPU", MAX_CPU_MILLI / 1000, "10,000 cores") * 1000
    return round(_number(milli, "CPU", MAX_CPU_MILLI, "10,000 cores"))


SizeMiB = Annotated[int, BeforeValidator(parse_size_mib)]
DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
CpuMilli = Annotated[int, BeforeValidator(_cores_to_milli)]
