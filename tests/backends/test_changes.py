"""`ChangeFeed`: the real backends' `poll_changes` from full reports. A caller that keeps the last
report of each attempt and applies the deltas holds the latest full report, always."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.backends.base import WorkerState, WorkerStatus
from corral.backends.changes import ChangeFeed

Key = tuple[str, int]


def status(wid: str, attempt: int, worker: int, state: WorkerState, observed: float = 0.0,
           code: int | None = None) -> WorkerStatus:
    return WorkerStatus(wid, attempt, worker, "n1", state, str(state), observed, code)


def test_first_report_is_everything_then_only_what_moved() -> None:
    feed = ChangeFeed()
    a0, b0 = status("a", 0, 0, WorkerState.RUNNING), status("b", 0, 0, WorkerState.RUNNING)
    assert feed.delta([a0, b0]) == ([a0, b0], [], True)
    # seen again later: the observation time alone is no change
    assert feed.delta([status("a", 0, 0, WorkerState.RUNNING, 5.0), b0]) == ([], [], False)
    ended = status("a", 0, 0, WorkerState.SUCCEEDED, 6.0, 0)
    assert feed.delta([ended, b0]) == ([ended], [], False)
    assert feed.delta([b0]) == ([], [("a", 0)], False)  # released
    feed.forget()
    assert feed.delta([b0]) == ([b0], [], True)


def test_a_gang_is_reported_whole_when_one_worker_moves() -> None:
    feed = ChangeFeed()
    w0, w1 = status("g", 1, 0, WorkerState.RUNNING), status("g", 1, 1, WorkerState.RUNNING)
    feed.delta([w0, w1])
    lost = status("g", 1, 1, WorkerState.LOST)
    assert feed.delta([w0, lost]) == ([w0, lost], [], False)


states = st.sampled_from([WorkerState.STARTING, WorkerState.RUNNING, WorkerState.SUCCEEDED,
                          WorkerState.FAILED])
report = st.dictionaries(st.tuples(st.sampled_from("abc"), st.integers(0, 1)),
                         st.lists(states, min_size=1, max_size=2), max_size=5)


@given(st.lists(report, min_size=1, max_size=8))
def test_applying_the_deltas_gives_the_latest_report(reports: list[dict[Key, list]]) -> None:
    feed, view = ChangeFeed(), dict[Key, list[WorkerStatus]]()
    for i, r in enumerate(reports):
        full = [status(k[0], k[1], w, s, float(i)) for k, ss in sorted(r.items())
                for w, s in enumerate(ss)]
        changed, gone, everything = feed.delta(full)
        assert everything == (i == 0)
        for key in gone:
            del view[key]
        by_key: dict[Key, list[WorkerStatus]] = {}
        for s in changed:
            by_key.setdefault((s.workload_id, s.attempt), []).append(s)
        view.update(by_key)
        assert {k: [(s.worker, s.state) for s in v] for k, v in view.items()} == {
            k: list(enumerate(ss)) for k, ss in r.items()}
