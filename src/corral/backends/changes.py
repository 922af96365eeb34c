"""`poll_changes` for a backend that can only report everything (Slurm, Ray): the full report
compared with the last one, so that the control loop reconciles only what moved.

The loop calls ``poll_changes(now)`` when a backend has it (`corral.control.reconcile`,
`BackendView`): (the workers of every attempt whose report changed, the attempts no longer
reported, whether this is everything). The fake backend knows what its hooks changed; Slurm and
Ray learn it from the engine in bulk (one ``squeue``, one call per Ray node), so they diff: an
attempt is reported again when any worker's state, reason, exit code, end time, message or node
differs from the last report (the observation time alone is not a change). The first call
reports everything and says so.

The backend's own cost per poll is unchanged (it asks the engine as before); what this saves is
the loop's: an idle cycle over thousands of running workers reconciles none of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from corral.backends.base import WorkerStatus

__all__ = ["ChangeFeed", "Delta"]

Key = tuple[str, int]
Delta = tuple[list[WorkerStatus], list[Key], bool]
_Seen = tuple[tuple[object, ...], ...]


class ChangeFeed:
    """The last full report, as signatures per attempt; `delta` turns a new one into a change."""

    def __init__(self) -> None:
        self._last: dict[Key, _Seen] | None = None

    def delta(self, statuses: Iterable[WorkerStatus]) -> Delta:
        by_key: dict[Key, list[WorkerStatus]] = {}
        for s in statuses:
            by_key.setdefault((s.workload_id, s.attempt), []).append(s)
        seen = {key: _signature(workers) for key, workers in by_key.items()}
        last, self._last = self._last, seen
        if last is None:
            return [s for workers in by_key.values() for s in workers], [], True
        changed = [s for key, workers in by_key.items() if last.get(key) != seen[key]
                   for s in workers]
        return changed, sorted(k for k in last if k not in seen), False

    def partial(self, statuses: Iterable[WorkerStatus], gone: Iterable[Key]) -> Delta:
        """A report of only some attempts (a backend that knows what moved, Kubernetes through
        its watch): those among them that changed, and the attempts `gone` since. Call `delta`
        first: the first report must be everything."""
        if self._last is None:
            raise RuntimeError("a partial report before the first full one")
        by_key: dict[Key, list[WorkerStatus]] = {}
        for s in statuses:
            by_key.setdefault((s.workload_id, s.attempt), []).append(s)
        changed: list[WorkerStatus] = []
        for key, workers in by_key.items():
            seen = _signature(workers)
            if self._last.get(key) != seen:
                self._last[key] = seen
                changed.extend(workers)
        left = sorted(k for k in set(gone) if self._last.pop(k, None) is not None)
        return changed, left, False

    @property
    def started(self) -> bool:
        """Whether a full report was taken since the start or the last `forget`."""
        return self._last is not None

    def forget(self) -> None:
        """The next `delta` reports everything (after a restart of the caller's view)."""
        self._last = None


def _signature(workers: list[WorkerStatus]) -> _Seen:
    return tuple(sorted((s.worker, s.node_id, s.state.value, s.reason, s.exit_code,
                         s.finished_at, s.message) for s in workers))
