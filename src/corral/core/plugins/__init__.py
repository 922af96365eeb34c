"""Placement plugins: filters are built in (see `corral.core.fit`); scores and device pickers are
pluggable and named. Each plugin's name is its registry and configuration key."""

from corral.core.plugins.base import (
    REGISTRY,
    DevicePicker,
    ScorePlugin,
    best_fit_devices,
    register,
)
from corral.core.plugins.bestfit import BESTFIT
from corral.core.plugins.builtin import BINPACK, CAPACITY, GPU_MODEL, PRICE, SPREAD
from corral.core.plugins.fragmentation import FGD, TaskType, typical_tasks
from corral.core.plugins.random_fit import RANDOM
from corral.core.plugins.throughput import THROUGHPUT

__all__ = [
    "BESTFIT",
    "BINPACK",
    "CAPACITY",
    "FGD",
    "GPU_MODEL",
    "PRICE",
    "RANDOM",
    "REGISTRY",
    "SPREAD",
    "THROUGHPUT",
    "DevicePicker",
    "ScorePlugin",
    "TaskType",
    "best_fit_devices",
    "register",
    "typical_tasks",
]
