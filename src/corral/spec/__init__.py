"""corral.spec: the documented, validated input formats (pool files, workload specs).

The names below are loaded on first use (PEP 562): `corral.spec.errors`, `.quantities` and
`.document` need only pydantic and PyYAML, and a client that imports them (the CLI reading a
file, parsing `--expires 7d`) must not pull in the scheduling core and numpy through this
package's models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.spec.errors import SpecError
    from corral.spec.load import load_pool, load_workloads
    from corral.spec.pool import NodeGroupSpec, PoolSpec, ProviderSpec, QueueSpec, SchedulerSpec
    from corral.spec.workload import WorkloadSpec

__all__ = [
    "NodeGroupSpec",
    "PoolSpec",
    "ProviderSpec",
    "QueueSpec",
    "SchedulerSpec",
    "SpecError",
    "WorkloadSpec",
    "load_pool",
    "load_workloads",
]

_HOME = {"SpecError": "errors", "load_pool": "load", "load_workloads": "load",
         "NodeGroupSpec": "pool", "PoolSpec": "pool", "ProviderSpec": "pool", "QueueSpec": "pool",
         "SchedulerSpec": "pool", "WorkloadSpec": "workload"}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.spec' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"corral.spec.{module}"), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value
