"""corral.control: the loop that turns the store's intent into running work, and back.

load a snapshot -> `corral.core.schedule` -> apply the Plan (one guarded transaction) -> act
through a backend (outside any transaction) -> record what the backend reports. See README.md.
"""

from corral.control.admission import Admission, AdmitAll
from corral.control.apply import StalePlan, apply_plan
from corral.control.cancellation import cancel
from corral.control.clock import Clock, ManualClock, SystemClock
from corral.control.leader import Leadership
from corral.control.lifecycle import TERMINAL, TRANSITIONS, IllegalTransition, State
from corral.control.loop import ControlLoop, StepReport
from corral.control.settings import ControlSettings
from corral.control.submission import DryRun, Submissions

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Admission",
    "AdmitAll",
    "Clock",
    "ControlLoop",
    "ControlSettings",
    "DryRun",
    "IllegalTransition",
    "Leadership",
    "ManualClock",
    "StalePlan",
    "State",
    "StepReport",
    "Submissions",
    "SystemClock",
    "apply_plan",
    "cancel",
]
