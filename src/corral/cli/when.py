"""What a `--since` / `--until` on the command line means, as seconds since the epoch.

    1h, 30m, 90s, 2d, 1w      that long before now
    now, today, yesterday     now; 00:00 UTC today; 00:00 UTC yesterday (days are UTC, as the
                              usage report's `day` groups are)
    2026-12-01, 2026-12-01T18:00:00Z, 2026-12-01T18:00:00+01:00
                              that time (UTC when no offset is written)
    1767225600                epoch seconds

So `corral usage --since yesterday --until today` is yesterday, whole.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import typer

__all__ = ["past_time"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
HINT = ("write 1h, 30m, 2d, today, yesterday, 2026-12-31, 2026-12-31T18:00:00Z or epoch "
        "seconds")


def past_time(value: str | None, field: str, now: float) -> float | None:
    """`value` as epoch seconds, relative forms counted back from `now`; a clear error naming
    `field` and the accepted forms for anything else."""
    if value is None:
        return None
    text = value.strip().lower()
    if match := _AGO.fullmatch(text):
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    midnight = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0,
                                                              microsecond=0)
    named = {"now": now, "today": midnight.timestamp(),
             "yesterday": (midnight - dt.timedelta(days=1)).timestamp()}
    if text in named:
        return named[text]
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise typer.BadParameter(f"{value!r} is not a time; {HINT}", param_hint=field)
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a time; {HINT}", param_hint=field) from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
