"""What the gap between corral's service autoscaler and the 60%-of-static-peak target is made of
(issue 12): the corral policy on the Azure LLM conversation trace with one cost removed at a
time (cold start, the scale-down window, the utilisation headroom, the tolerance band), then all
of them, beside the hindsight oracle (resizes every 10 s / 60 s, no cold start, no wait).

    .venv/bin/python bench/serve_gap.py [TRACE.csv]

Each row: share of requests within the SLO (TTFT <= 2 s) and replica-hours as a share of
static-peak's. Deterministic (no random draw); ~1-2 s of CPU per row.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from corral.serving import ServiceScaler
from corral.serving.config import Behavior
from corral.sim.serve import (
    ServeOptions,
    _simulate,
    corral_config,
    hindsight_hours,
    in_flight_unlimited,
    run_serve,
)
from corral.sim.serve_model import PROFILES
from corral.sim.serve_trace import load_requests

TRACE = Path(__file__).resolve().parents[2] / \
    "shared/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv"


def main() -> None:
    req = load_requests(Path(sys.argv[1]) if len(sys.argv) > 1 else TRACE)
    base = ServeOptions(profile=PROFILES["a100"])
    peak = run_serve(req, "static-peak", base).replica_hours
    service = base.profile.service_s(req.prompt_tokens, req.output_tokens)
    for w in (10.0, 60.0):
        h = hindsight_hours(req.arrival_s, service, base.profile.max_batch, w, base.warmup_s)
        print(f"hindsight oracle, {w:g} s windows, no wait: {100 * h / peak:.1f}% of peak")
    mean, top = in_flight_unlimited(req.arrival_s, service)
    print(f"in flight with unlimited replicas: mean {mean:.1f}, peak {top} "
          f"(max_batch {base.profile.max_batch}): mean/peak = {mean / top:.1%}")
    cold0 = dataclasses.replace(base, profile=dataclasses.replace(base.profile, cold_start_s=0))
    rows = [("corral as shipped", base, {}),
            ("no cold start", cold0, {}),
            ("no scale-down window (120 s -> 0)", base,
             {"scale_down": Behavior(stabilization_s=0.0,
                                     limits=corral_config(base).scale_down.limits)}),
            ("no headroom (utilization 0.8 -> 1.0)", dataclasses.replace(
                base, target_utilization=1.0), {}),
            ("no tolerance band (10% -> 0)", base, {"tolerance": 0.0}),
            ("stable window 60 s -> 30 s", base, {"stable_window_s": 30.0}),
            ("all four removed", dataclasses.replace(cold0, target_utilization=1.0),
             {"scale_down": Behavior(stabilization_s=0.0,
                                     limits=corral_config(base).scale_down.limits),
              "tolerance": 0.0})]
    initial = max(1, math.ceil(mean / base.profile.max_batch))  # static-mean, warm
    print(f"{'variant':40s} {'within SLO %':>13s} {'% of peak':>10s} {'cold starts':>12s}")
    for name, opts, update in rows:
        config = corral_config(opts).model_copy(update=update)
        r = _simulate(req, opts, initial, ServiceScaler(config), 2.0)
        print(f"{name:40s} {100 * r.within_slo:13.2f} {100 * r.replica_hours / peak:10.1f} "
              f"{r.cold_starts:12d}")
    print("sweep: the least replica-hours that keep >= 99% within the SLO")
    best = None
    for util in (0.8, 0.85, 0.9):
        for down in (120.0, 60.0, 30.0):
            opts = dataclasses.replace(base, target_utilization=util)
            config = corral_config(opts).model_copy(update={"scale_down": Behavior(
                stabilization_s=down, limits=corral_config(base).scale_down.limits)})
            r = _simulate(req, opts, initial, ServiceScaler(config), 2.0)
            share = 100 * r.replica_hours / peak
            print(f"  utilization {util:.2f}, scale-down window {down:5.0f} s: "
                  f"{100 * r.within_slo:6.2f}% within SLO at {share:5.1f}% of peak")
            if r.within_slo >= base.slo_target and (best is None or share < best[0]):
                best = (share, util, down)
    if best is not None:
        print(f"best meeting the SLO: {best[0]:.1f}% of peak (utilization {best[1]:.2f}, "
              f"scale-down window {best[2]:g} s)")


if __name__ == "__main__":
    main()
