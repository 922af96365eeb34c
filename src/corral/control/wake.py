"""When `ControlLoop.run` steps next: soon after an event, coalesced, else every `interval_s`.

    step ─> wait ─┬─ woken (a workload written by another thread: a submission, a cancel)
                  ├─ the backend's news (`changed_since_poll`: a worker's end it can see
                  │    without asking its engine, e.g. Slurm's runners' exit records)
                  │      -> the next step starts at once, but no sooner than `coalesce_s`
                  │         after the last one began
                  └─ nothing: the next step `interval_s` after the last one began

A backend with news is asked every `coalesce_s` while the loop waits (its news is only seen by
asking); without it (local, agent, Ray, Kubernetes) only `set` can wake the loop, so the wait
sleeps on the event to the deadline: an idle loop wakes once an interval, not 20 times a second.

Why: with a fixed interval a GPU freed just after a step waits up to `interval_s` for its next
job (`corral up`'s 1 s cost a Slurm slot up to a second), and stepping back to back instead
planned once per job end (bench/README, "Through a real Slurm": corral's process 13-17 ms CPU a
job, most of it `core.schedule` over the whole waiting queue, once per end). Stepping on events
but at most once per `coalesce_s` plans once for every end that arrived meanwhile: the cost of
a plan is shared by the ends of its window, and a lone end is acted on within `coalesce_s`
plus one check. Slurm does the same: slurmctld schedules on events (a job's submission or
end, https://slurm.schedmd.com/sched_config.html) and ``SchedulerParameters=
sched_min_interval`` bounds how often an event may run it; a group commit's delay (PostgreSQL's
``commit_delay``) is the same idea for writes.

Time is read through `now` and the waits go through `pause`, so tests drive a fake clock and
count steps; no wall-clock assertion needs this.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Wake"]

#: the check period while waiting when `coalesce_s` is 0 (no coalescing): never a busy loop
MIN_TICK_S = 0.01
#: with no backend news, the longest sleep before `stop` is looked at again: a stop that
#: does not also `set` the wake is seen within this, however long `interval_s` is
STOP_CHECK_S = 1.0
#: an arrival (a submission: more demand, no GPU freed) steps the loop no sooner than this many
#: times the last step's duration after that step began, so that a stream of submissions keeps
#: the loop's share of the process at about 1/ARRIVAL_DUTY: stepping every `coalesce_s` on
#: each submission batch took ~35% of `corral up`'s submissions/s (reviewer's measure, 4,800
#: submissions from 16 clients: 91 steps in the burst against 4-5). A lone submission to a
#: small, idle loop (steps of a few ms) still steps within ~`coalesce_s`. Slurm bounds
#: submit-time scheduling the same way (`SchedulerParameters=defer`, `sched_min_interval`:
#: https://slurm.schedmd.com/sched_config.html).
ARRIVAL_DUTY = 10.0


class Wake:
    """The loop's wait between steps. `set` (any thread) asks for a step soon; `news` (the
    loop's thread, cheap: no engine command) says whether the backend saw a change since its
    last poll; `arm` marks a step's start; `wait` blocks until the next step is due."""

    def __init__(self, interval_s: float, coalesce_s: float, *,
                 news: Callable[[], bool] | None = None,
                 now: Callable[[], float] = time.monotonic,
                 pause: Callable[[threading.Event, float], object] | None = None) -> None:
        if interval_s < 0 or coalesce_s < 0:
            raise ValueError(f"interval_s ({interval_s}) and coalesce_s ({coalesce_s}) must "
                             "be seconds >= 0")
        self.interval_s, self.coalesce_s = interval_s, coalesce_s
        self.news, self.now = news, now
        self._pause = pause or (lambda event, seconds: event.wait(seconds))
        self._event = threading.Event()  # wakes the sleeper; the flags say why
        self._urgent = self._arrived = False
        #: steps started by an event, and by the interval (for metrics and tests)
        self.by_event = self.by_interval = 0

    def set(self, *, arrival: bool = False) -> None:
        """Something happened that the next step should see: step soon (thread-safe). An
        `arrival` (new work only) steps no sooner than ARRIVAL_DUTY x the last step's duration
        after it began; anything else (an end, a cancel, a launch returned) within
        `coalesce_s`."""
        if arrival:
            self._arrived = True
        else:
            self._urgent = True
        self._event.set()

    def arm(self) -> float:
        """A step begins now: what set the event before this is the step's to see."""
        self._urgent = self._arrived = False
        self._event.clear()
        return self.now()

    def wait(self, began: float, stop: threading.Event) -> None:
        """Until the next step is due: an event (then no sooner than `coalesce_s` after
        `began`; an arrival alone no sooner than ARRIVAL_DUTY x the step's duration after it),
        `interval_s` after `began`, or `stop`."""
        deadline = began + self.interval_s
        tick = max(self.coalesce_s, MIN_TICK_S)
        # an arrival's step is due once the last step's share of the time since it began
        # is 1/ARRIVAL_DUTY (the step ended when this wait began)
        arrival_due = began + max(self.coalesce_s, ARRIVAL_DUTY * (self.now() - began))
        while not stop.is_set():
            now = self.now()
            if now >= deadline:
                self.by_interval += 1
                return
            if self._urgent or (self.news is not None and self.news()):
                # what arrives before the window closes goes into the same step
                rest = min(began + self.coalesce_s, deadline) - now
                if rest > 0:
                    self._pause(stop, rest)
                self.by_event += 1
                return
            if self._arrived and now >= arrival_due:
                self.by_event += 1
                return
            # sleep to the next due time on the event; cleared first, then the flags looked at
            # again, so a `set` between the look and the clear is never slept through (and a
            # stale event, set before the step began, cannot make this loop spin)
            self._event.clear()
            if self._urgent or (self._arrived and self.now() >= arrival_due):
                continue
            until = min(arrival_due, deadline) if self._arrived else deadline
            if self.news is None:  # only `set` can wake it: sleep on the event, looking at
                # `stop` at least every STOP_CHECK_S: nothing sets the wake's event when a
                # caller sets `stop` alone (`corral up` sets both, so it stops at once)
                self._pause(self._event, min(STOP_CHECK_S, until - now))
            else:  # the backend's news is only seen by asking: ask every `tick`
                self._pause(self._event, min(tick, until - now))
