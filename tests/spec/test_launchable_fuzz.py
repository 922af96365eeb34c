"""Fixed-seed fuzz: every workload spec the validator accepts can be launched (issue 15).

Hypothesis draws specs that are mostly plausible, with hostile values mixed in (NUL bytes, '='
in env names, lone surrogates, newlines, huge and non-finite numbers, booleans for numbers).
A refused spec is fine; an accepted one must build into the local backend's runner argv and
environment, and `os.posix_spawn` must take them: it is called on a program that does not
exist, so it converts every string exactly as for a real launch, then fails with
FileNotFoundError instead of starting anything. The backend's own launch checks may refuse a
spec (InvalidLaunchSpec: a missing working_dir, a program not on PATH), never raise anything
else. Derandomized (fixed seed); CORRAL_FUZZ_EXAMPLES sets the count (default 300 for CI;
20,000 for the figures in the report).
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from corral.backends.errors import BackendError
from corral.backends.local import LocalBackend, virtual_nodes
from corral.control.act import launch_spec
from corral.control.settings import ControlSettings
from corral.control.submission import stored_form, unit_ids
from corral.core.model import WorkerAssignment
from corral.spec import WorkloadSpec
from corral.store.workloads import WorkloadRecord

EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "300"))
NOWHERE = "/nonexistent/corral-fuzz-program"

HOSTILE_CHARS = ["\x00", "=", "\n", "\ud800", "\udcff", "é", "\u202e", " ", "$", "'", "/", "-"]
SAFE = [*string.ascii_letters, *string.digits, "_", ".", "-", "/", " "]
safe_text = st.text(alphabet=st.sampled_from(SAFE), max_size=12)
any_text = st.text(alphabet=st.sampled_from([*SAFE, *HOSTILE_CHARS]), max_size=12)
text = st.one_of(safe_text, safe_text, any_text)  # mostly plausible, a third hostile
name = st.one_of(*[st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True)] * 3,
                 any_text)
HOSTILE_NUMBERS = [1e308, float("inf"), float("nan"), 2**64, 10**400, -1, True, "1e999", "8"]


def mostly(valid: list[object], hostile: list[object] = HOSTILE_NUMBERS) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(hostile))


spec_dicts = st.fixed_dictionaries(
    {"name": name, "queue": name,
     "command": st.lists(text, max_size=4).map(lambda a: ["true", *a])},
    optional={
        "gpus": mostly([0, 0.25, 0.5, 1, 2, 8]), "workers": mostly([1, 2, 4]),
        "cpu": mostly([1, 0.5, "500m", 4], [*HOSTILE_NUMBERS, "-500m", "inf", "nan"]),
        "memory": mostly(["512MiB", 1024, "80GiB"], [*HOSTILE_NUMBERS, "9" * 40 + "G"]),
        "priority": mostly([0, 5, -5]), "max_restarts": mostly([0, 3]),
        "min_runtime": mostly(["30m", 60], [*HOSTILE_NUMBERS, "inf", "1e999d"]),
        "max_price_per_gpu_hour": mostly([2.5, 10]),
        "env": st.dictionaries(text, text, max_size=4),
        "working_dir": st.one_of(st.sampled_from(["/tmp", "/", "/nonexistent"]), text),
        "checkpoint_dir": text.map(lambda t: f"/tmp/corral-fuzz-ckpt/{t}"),
        "gpu_models": st.lists(text, max_size=3),
    })


def _record(spec: WorkloadSpec) -> WorkloadRecord:
    uid = unit_ids("fuzz", spec)[0]
    return WorkloadRecord(
        seq=1, id=uid, group_id=uid, name=spec.name, queue=spec.queue, user="ann",
        kind=str(spec.kind), spec=stored_form(spec), state="starting", reason_code="",
        reason_message="", submitted_at=0.0, attempt=0, restart_count=0, version=1,
        started_at=None, finished_at=None, not_before=0.0, stop_reason=None, stop_message="",
        exit_code=None)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> LocalBackend:
    return LocalBackend(tmp_path_factory.mktemp("fuzz") / "work", nodes=virtual_nodes(1, 8))


def test_every_accepted_spec_is_launchable(backend: LocalBackend, tmp_path: Path) -> None:
    tally = {"refused": 0, "accepted": 0, "backend refused": 0}

    @given(spec_dicts)
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(data: dict[str, object]) -> None:
        try:
            spec = WorkloadSpec.model_validate(data)
        except ValidationError:
            tally["refused"] += 1
            return
        if spec.command is None and spec.shell is None:
            tally["refused"] += 1  # submission asks for a program (corral.control.submission)
            return
        tally["accepted"] += 1
        stored = WorkloadSpec.from_stored(stored_form(spec))  # what the loop reads back
        assert stored == spec
        assignments = tuple(WorkerAssignment(i, "local-0", (0,), 1000, 81920)
                            for i in range(stored.workers))
        launch = launch_spec(_record(stored), stored, assignments,
                             ControlSettings(checkpoint_root=tmp_path))
        try:
            backend._check_spec(launch)
        except BackendError:
            tally["backend refused"] += 1  # a missing working_dir: fails cleanly, with reason
        argv, env = backend.worker_process(launch, 0, tmp_path / "attempt", 12345)
        with pytest.raises(FileNotFoundError):
            os.posix_spawn(NOWHERE, argv, env)

    check()
    print(f"fuzz: {EXAMPLES} examples, {tally}, 0 accepted specs failed at launch")
    assert tally["accepted"] > EXAMPLES // 10  # the fuzz reaches the launch path
