"""The environment contract, and that the README documents every name of it."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral.backends
from corral.backends import environment as env
from corral.core.model import WorkerAssignment
from corral.core.vendors import DEVICE_VARIABLES

from .conftest import make_spec


def test_every_contract_variable_is_set() -> None:
    spec = (make_spec("train").workers(2).attempt(3).devices(2, 5).share(250, 20000)
            .with_(env={"WANDB_PROJECT": "x"}, checkpoint_dir="/ck", resume_from="/ck/step-9",
                   restart_count=1).build())
    got = env.worker_environment(spec, spec.assignments[1], master_addr="10.0.0.7",
                                 master_port=29500, deadline_file="/w/deadline")
    assert got == {
        "WANDB_PROJECT": "x",
        "CUDA_VISIBLE_DEVICES": "2,5",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CORRAL_WORKLOAD_ID": "train",
        "CORRAL_QUEUE": "research",
        "CORRAL_WORKER_INDEX": "1",
        "CORRAL_WORKERS": "2",
        "CORRAL_NODE_ID": "local-1",
        "CORRAL_ATTEMPT": "3",
        "CORRAL_RESTART_COUNT": "1",
        "CORRAL_GPU_MILLI": "250",
        "CORRAL_GPU_MEMORY_MIB": "20000",
        "CORRAL_CHECKPOINT_DIR": "/ck",
        "CORRAL_RESUME_FROM": "/ck/step-9",
        "CORRAL_PREEMPT_DEADLINE_FILE": "/w/deadline",
        "CORRAL_MASTER_ADDR": "10.0.0.7",
        "CORRAL_MASTER_PORT": "29500",
        "CORRAL_PROGRESS_FILE": "",
    }
    # every reserved name but the other vendors' device variables (an NVIDIA node here)
    others = DEVICE_VARIABLES - {"CUDA_VISIBLE_DEVICES"}
    assert set(got) - {"WANDB_PROJECT"} == env.RESERVED - others
    assert not set(got) & others


def test_a_worker_without_gpus_sees_none() -> None:
    spec = make_spec().devices().build()
    got = env.worker_environment(spec, WorkerAssignment(0, "n", (), 0, 0), master_addr="a",
                                 master_port=1, deadline_file="f")
    assert got["CUDA_VISIBLE_DEVICES"] == ""  # empty hides every GPU; unset would show all
    assert (got["CORRAL_GPU_MILLI"], got["CORRAL_GPU_MEMORY_MIB"]) == ("0", "0")
    assert (got["CORRAL_CHECKPOINT_DIR"], got["CORRAL_RESUME_FROM"]) == ("", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(env.format_deadline(1712345678.25), 1712345678.25, id="round-trip"),
        pytest.param("1712345678\n", 1712345678.0, id="integer"),
        pytest.param("", None, id="empty"),
        pytest.param("17123", 17123.0, id="short"),
        pytest.param("garbage", None, id="not-a-number"),
    ],
)
def test_deadline_file_format(text: str, expected: float | None) -> None:
    assert env.parse_deadline(text) == expected


@pytest.mark.parametrize(
    ("names", "newest"),
    [
        pytest.param([], None, id="empty-dir"),
        pytest.param(["events-w0.jsonl", "result-w0.json", "notes.txt"], None,
                     id="no-checkpoint-among-other-files"),
        pytest.param(["ckpt-00000010.npz", "ckpt-00000020.npz", "events.jsonl"],
                     "ckpt-00000020.npz", id="zero-padded-steps"),
        pytest.param(["checkpoint-500", "checkpoint-1000", "checkpoint-999"], "checkpoint-1000",
                     id="steps-compare-as-numbers-not-text"),
        pytest.param(["ckpt-00000020-w0.npz", "ckpt-00000020-w1.npz", "ckpt-00000010-w1.npz"],
                     "ckpt-00000020-w1.npz", id="step-first-then-worker"),
        pytest.param(["ckpt-10.pt", ".ckpt-20.pt.123.tmp", "ckpt-30.pt.tmp",
                      "ckpt-40.partial"], "ckpt-10.pt", id="unfinished-writes-are-not-checkpoints"),
        pytest.param(["Checkpoint-7", "CKPT_3"], "Checkpoint-7", id="prefix-in-any-case"),
        pytest.param(["ckpt-1", "ckpt-01"], "ckpt-1", id="equal-numbers-ordered-by-name"),
        pytest.param(["ckpt-a", "ckpt-2"], "ckpt-a", id="text-after-the-prefix-compares-as-text"),
        pytest.param(["model.pt", "last.ckpt"], None, id="other-names-are-not-recognised"),
    ],
)
def test_newest_checkpoint_by_natural_name_order(names: list[str], newest: str | None) -> None:
    assert env.newest_checkpoint(names) == newest
    assert env.newest_checkpoint(reversed(names)) == newest  # the listing order does not matter


def test_preemption_signal_is_sigterm() -> None:
    import signal

    assert env.PREEMPT_SIGNAL == signal.SIGTERM


def test_readme_documents_every_contract_name() -> None:
    readme = (Path(corral.backends.__file__).parent / "README.md").read_text()
    missing = sorted(name for name in env.RESERVED if f"`{name}`" not in readme)
    assert not missing, f"README.md does not document {missing}"


def test_readme_documents_the_array_names() -> None:
    readme = (Path(corral.backends.__file__).parent / "README.md").read_text()
    names = (env.CORRAL_ARRAY_INDEX, env.CORRAL_ARRAY_SIZE, env.CORRAL_PARAMS)
    assert all(f"`{n}`" in readme for n in names) and f"`{env.CORRAL_PARAM_PREFIX}<NAME>`" in readme
    from corral.spec.workflow import ArraySpec

    spec = ArraySpec.model_validate({"grid": {"lr": [1]}})
    assert set(spec.task_env(0)) == {*names, env.CORRAL_PARAM_PREFIX + "LR"}
