"""The actions of a cycle, least disruptive first: allocate, consolidate, reclaim, preempt."""

from corral.core.actions.allocate import allocate, reallocate
from corral.core.actions.consolidate import consolidate
from corral.core.actions.evict import preempt, reclaim

__all__ = ["allocate", "consolidate", "preempt", "reallocate", "reclaim"]
