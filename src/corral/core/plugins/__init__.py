"""Placement plugins: filters are built in (see `corral.core.fit`); scores and device pickers are
pluggable and named. Each plugin's name is its registry and configuration key."""

from corral.core.plugins.base import (
    REGISTRY,
    DevicePicker,
    ScorePlugin,
    best_fit_devices,
    register,
)
from corral.core.plugins.builtin import BINPACK, GPU_MODEL, PRICE, SPREAD

__all__ = [
    "BINPACK",
    "GPU_MODEL",
    "PRICE",
    "REGISTRY",
    "SPREAD",
    "DevicePicker",
    "ScorePlugin",
    "best_fit_devices",
    "register",
]
