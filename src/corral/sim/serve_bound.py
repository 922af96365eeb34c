"""The least replica-hours any policy needs on a trace while >= `slo_target` of its requests meet
the time-to-first-token SLO: a lower bound, solved as a small mixed-integer program (HiGHS,
through scipy.optimize.milp).

Why not the "hindsight oracle" (`serve.hindsight_hours`): it serves every request without any
wait and starts replicas for free, so it is not a lower bound (a request may wait within its TTFT
budget, and 1% of requests may miss the SLO: both let a policy hold less) and not a schedule a
policy could follow either (a replica costs a cold start). This bound allows the wait and the
slack, and charges the cold start.

The program, over windows of W = `window_s` seconds from `start_s` (the simulator's warm-up:
requests arriving before it are left out, a relaxation):

    minimise   W x sum_(w>=2) n_w  -  W x n_2  +  (cold - 2W) x sum_(w late) u_w       (seconds)
    subject to sum_i z_i x m_i(I)  <=  max_batch x W x sum_(w in I) n_w      every interval I
               sum_(i arrives in w or later) hold_i <= max_batch x W x sum_(v>=w) n_v (+ tail)
               u_w >= n_w - n_(w-1),  u_w >= 0
               sum_i z_i >= slo_target x N,  0 <= z_i <= 1, z_i = 0 if prefill_i > SLO
               n_w integer >= 0

- n_w: the most replicas past their cold start (ready or draining) at any moment of window w;
  z_i: request i meets the SLO; "late" windows start a full cold start after start_s.
- m_i(I): the mandatory part of request i in interval I, the least time it must run inside I
  whatever start s_i in [a_i, a_i + d_i] it gets (d_i = SLO - prefill_i, its wait budget): the
  energetic reasoning of cumulative scheduling (Baptiste, Le Pape and Nuijten, "Constraint-Based
  Scheduling", 2001). Its overlap with I is unimodal in s_i, so the least is at an end of the
  range. Intervals of several lengths (`interval_windows`) are all valid; longer ones are
  stronger where the wait moves work across a short window's edge.
- Work conservation: every request runs whole, in the SLO or not, after it arrives; what would
  end after the last window runs on a continuous tail of replicas, billed alike.
- Why the objective is below the billed replica-seconds: n_w x W over-counts the time replicas
  are up in window w by at most W per replica that comes up in it and W per replica that ends
  in it. Windows 0 and 1 are not counted. A replica up at start_s + 2W ends once (-W x n_2). A
  replica that comes up later was billed before: a full cold start if launched after start_s
  (late windows: cold - 2W net), at least 2W otherwise (net >= 0, counted as 0). u_w is at most
  the replicas that came up in window w. So billed >= objective, for any policy.

What is relaxed (the true least can only be higher): fluid slots (a request's work may be
spread over slots, the energetic bound's weakness), fractional z_i, a request out of the SLO
uses capacity only through work conservation, and replica starts cost nothing beyond the cold
start. A solve stopped by its time limit reports HiGHS's dual bound, still a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import Bounds, LinearConstraint, milp  # type: ignore[import-untyped]

__all__ = ["SloBound", "mandatory_parts", "slo_bound"]


@dataclass(frozen=True)
class SloBound:
    replica_hours: float  # the least billed replica-hours (a lower bound)
    requests: int  # counted (arriving at or after start_s)
    within_slo: float  # the share the solution serves within the SLO (>= slo_target)
    status: str  # HiGHS' message; "optimal" unless a time limit stopped it (then: dual bound)
    mip_gap: float


def mandatory_parts(arrival: npt.NDArray[np.float64], budget: npt.NDArray[np.float64],
                    hold: npt.NDArray[np.float64], t1: npt.NDArray[np.float64],
                    t2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The least time each request must run inside [t1, t2) when it starts anywhere in
    [arrival, arrival + budget] and runs `hold` seconds (element-wise)."""
    def overlap(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        inside: npt.NDArray[np.float64] = np.clip(np.minimum(s + hold, t2) - np.maximum(s, t1),
                                                  0.0, None)
        return inside
    least: npt.NDArray[np.float64] = np.minimum(overlap(arrival), overlap(arrival + budget))
    return least


def _energy_rows(arrival: npt.NDArray[np.float64], budget: npt.NDArray[np.float64],
                 hold: npt.NDArray[np.float64], start_s: float, window_s: float, n_windows: int,
                 lengths: tuple[int, ...]) -> tuple[sparse.csr_array, list[tuple[int, int]]]:
    """One row per interval (first window j, k windows): the requests' mandatory parts in it."""
    rows, cols, vals = [], [], []
    spans: list[tuple[int, int]] = []
    row = 0
    for k in lengths:
        length = k * window_s
        # intervals [start + jW, start + jW + kW) that may get a mandatory part from request i
        lo = np.floor((arrival + budget - length - start_s) / window_s).astype(np.int64)
        hi = np.ceil((arrival + hold - start_s) / window_s).astype(np.int64)
        lo, hi = np.clip(lo, 0, n_windows - k), np.clip(hi, 0, n_windows - k)
        count = np.maximum(hi - lo + 1, 0)
        req = np.repeat(np.arange(len(arrival)), count)
        j = np.repeat(lo, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count,
                                                                        count))
        t1 = start_s + j * window_s
        m = mandatory_parts(arrival[req], budget[req], hold[req], t1, t1 + length)
        keep = m > 1e-9
        rows.append(row + j[keep])
        cols.append(req[keep])
        vals.append(m[keep])
        spans.extend((jj, k) for jj in range(n_windows - k + 1))
        row += n_windows - k + 1
    a = sparse.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(row, len(arrival)))
    return a, spans


def _window_costs(n_win: int, window_s: float, cold_start_s: float) -> npt.NDArray[np.float64]:
    """Objective coefficients of n_w then u_w (the module docstring says why each is below what
    a policy is billed)."""
    up = np.full(n_win, window_s)
    up[:2] = 0.0
    if n_win > 2:
        up[2] -= window_s
    late = np.arange(n_win) * window_s >= cold_start_s
    per_start = np.where(late, max(cold_start_s - 2 * window_s, 0.0), 0.0)
    return np.concatenate([up, per_start])


def slo_bound(arrival: npt.NDArray[np.float64], prefill: npt.NDArray[np.float64],
              service: npt.NDArray[np.float64], *, max_batch: int, slo_s: float,
              slo_target: float, cold_start_s: float, start_s: float = 0.0,
              window_s: float = 2.0, interval_windows: tuple[int, ...] = (1, 5, 15),
              time_limit_s: float = 600.0, whole_replicas: bool = True) -> SloBound:
    """The lower bound described in the module docstring, for requests arriving >= start_s.
    `whole_replicas=False` solves the linear relaxation (n_w fractional): a weaker bound, found
    in seconds where the integer program may need minutes."""
    if window_s <= 0:
        raise ValueError(f"window_s: must be > 0, got {window_s:g}")
    keep = arrival >= start_s
    a, hold = arrival[keep], service[keep]
    budget = np.maximum(slo_s - prefill[keep], 0.0)
    possible = prefill[keep] <= slo_s
    n_req = len(a)
    end = float(np.max(a + budget + hold)) if n_req else start_s
    n_win = max(1, math.ceil((end - start_s) / window_s))
    energy, spans = _energy_rows(a, budget, hold, start_s, window_s, n_win, interval_windows)
    # columns: n_w (n_win), u_w (n_win), z_i (n_req)
    cover = sparse.csr_array((np.ones(sum(k for _, k in spans)),
                              (np.repeat(np.arange(len(spans)), [k for _, k in spans]),
                               np.concatenate([np.arange(j, j + k) for j, k in spans]))),
                             shape=(len(spans), n_win))
    a_energy = sparse.hstack([-max_batch * window_s * cover,
                              sparse.csr_array((len(spans), n_win)), energy])
    eye = sparse.eye_array(n_win, format="csr")
    shift = sparse.eye_array(n_win, k=-1, format="csr")  # n_(w-1)
    a_ready = sparse.hstack([-eye + shift, eye, sparse.csr_array((n_win, n_req))])
    a_share = sparse.hstack([sparse.csr_array((1, 2 * n_win)),
                             sparse.csr_array(np.ones((1, n_req)))])
    # work arriving at or after a window's start is done after it, in or out of the SLO: the
    # suffix sums S_w = n_w + S_(w+1) carry it (columns after z)
    arrive_win = np.minimum(((a - start_s) // window_s).astype(np.int64), n_win - 1)
    work_after = np.cumsum(np.bincount(arrive_win, hold, n_win)[::-1])[::-1]
    a_suffix = sparse.hstack([-eye, sparse.csr_array((n_win, n_win + n_req)),
                              eye - sparse.eye_array(n_win, k=1, format="csr")])
    a_work = sparse.hstack([sparse.csr_array((n_win, 2 * n_win + n_req)),
                            max_batch * window_s * eye])
    # and a request out of the SLO may end after the horizon: a continuous tail of replicas,
    # billed like any (the last column), joins the last suffix sum
    tail = sparse.csr_array((np.array([-1.0]), (np.array([n_win - 1]), np.array([0]))),
                            shape=(n_win, 1))
    a_suffix = sparse.hstack([a_suffix, tail])
    a_work = sparse.hstack([a_work, sparse.csr_array((n_win, 1))])
    a_energy = sparse.hstack([a_energy, sparse.csr_array((len(spans), n_win + 1))])
    a_ready = sparse.hstack([a_ready, sparse.csr_array((n_win, n_win + 1))])
    a_share = sparse.hstack([a_share, sparse.csr_array((1, n_win + 1))])
    constraints = [LinearConstraint(a_energy.tocsr(), -np.inf, 0.0),
                   LinearConstraint(a_suffix.tocsr(), 0.0, 0.0),
                   LinearConstraint(a_work.tocsr(), work_after, np.inf),
                   LinearConstraint(a_ready.tocsr(), 0.0, np.inf),
                   LinearConstraint(a_share.tocsr(), slo_target * n_req, np.inf)]
    cost = np.concatenate([_window_costs(n_win, window_s, cold_start_s), np.zeros(n_req + n_win),
                           [window_s]])
    upper = np.concatenate([np.full(2 * n_win, np.inf), possible.astype(float),
                            np.full(n_win + 1, np.inf)])
    integrality = np.concatenate([np.full(n_win, 1.0 if whole_replicas else 0.0),
                                  np.zeros(2 * n_win + n_req + 1)])
    res = milp(cost, constraints=constraints, integrality=integrality,
               bounds=Bounds(np.zeros(len(cost)), upper),
               options={"time_limit": time_limit_s, "mip_rel_gap": 1e-3})
    if res.x is None:
        raise RuntimeError(f"slo_bound: HiGHS found no solution: {res.message}")
    # a stopped solve's dual bound is still a lower bound; an optimal one equals the objective
    value = float(getattr(res, "mip_dual_bound", None) or res.fun)
    z = res.x[2 * n_win:2 * n_win + n_req]
    return SloBound(max(value, 0.0) / 3600, n_req, float(z.sum() / max(n_req, 1)),
                    "optimal" if res.status == 0 else str(res.message),
                    float(getattr(res, "mip_gap", 0.0) or 0.0))
