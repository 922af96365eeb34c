"""Dashboard settings, from arguments or the environment.

    CORRAL_SIM_REPORTS      directory of `corral simulate` reports (PNG, JSON) to show; unset: none
    CORRAL_USAGE_SAMPLE_S   seconds between samples of the utilization chart (default 10)
    CORRAL_USAGE_KEEP_S     how far back the chart goes (default 86400: a day)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WebSettings"]

log = logging.getLogger(__name__)


def _positive(env: Mapping[str, str], key: str, default: float) -> float:
    """A bad value is a warning naming the fix, and the default is used: a typo in a dashboard
    knob must not keep the control plane from starting."""
    raw = env.get(key, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        log.warning("%s=%r is not a positive number of seconds (set it like %s=10); using %g",
                    key, raw, key, default)
        return default
    return value


@dataclass(frozen=True)
class WebSettings:
    sim_reports_dir: Path | None = None
    usage_interval_s: float = 10.0
    usage_keep_s: float = 86_400.0
    #: how long one reading of the whole pool serves every dashboard and scrape (seconds)
    cache_ttl_s: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env
        reports = env.get("CORRAL_SIM_REPORTS") or None
        return cls(sim_reports_dir=Path(reports) if reports else None,
                   usage_interval_s=_positive(env, "CORRAL_USAGE_SAMPLE_S", 10.0),
                   usage_keep_s=_positive(env, "CORRAL_USAGE_KEEP_S", 86_400.0))

    @property
    def usage_keep(self) -> int:
        return max(int(self.usage_keep_s / self.usage_interval_s), 1)
