"""`corral up` says at start when the workers' users cannot run the jobs' interpreter (issue 14):
as root, workers run as `corral-q-<queue>`, and a venv linked into /root (0700) is out of their
reach, so every job that runs `python` would fail with exit 126."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends.worker_users import WorkerUsers, interpreter_problem, unreachable_by_others


@pytest.fixture
def tree() -> Iterator[Path]:
    # not under pytest's tmp_path: its base is 0700 when root runs the tests
    root = Path(tempfile.mkdtemp(prefix="corral-wu-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _program(folder: Path, mode: int = 0o755) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "python"
    program.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(program, mode)
    return program


@pytest.mark.parametrize(("folder_mode", "file_mode", "blocked"), [
    (0o755, 0o755, None),
    (0o700, 0o755, ("home", "0700")),  # /root as pyenv leaves it
    (0o711, 0o755, None),  # searchable, not listable: enough to run a known path
    (0o755, 0o750, ("home/bin/python", "0750")),  # the file itself: group only
], ids=["open", "private-folder", "search-only-folder", "group-only-file"])
def test_what_other_users_cannot_reach_is_named(tree: Path, folder_mode: int, file_mode: int,
                                                blocked: tuple[str, str] | None) -> None:
    program = _program(tree / "home" / "bin", file_mode)
    os.chmod(tree / "home", folder_mode)
    problem = unreachable_by_others([(program, True)])
    if blocked is None:
        assert problem is None
    else:
        where, mode = blocked
        assert problem is not None and problem.startswith(f"{tree / where} is {mode}"), problem


def test_a_link_is_followed_to_where_the_interpreter_lives(tree: Path) -> None:
    target = _program(tree / "private" / "bin")
    os.chmod(tree / "private", 0o700)
    (tree / "venv" / "bin").mkdir(parents=True)
    link = tree / "venv" / "bin" / "python"
    link.symlink_to(target)
    problem = unreachable_by_others([(link, True), (Path(os.path.realpath(link)), True)])
    assert problem is not None and str(tree / "private") in problem and "0700" in problem


def test_a_library_folder_must_be_listable(tree: Path) -> None:
    lib = tree / "lib"
    lib.mkdir()
    os.chmod(lib, 0o711)
    assert "not readable" in (unreachable_by_others([(lib, False)]) or "")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def _nobody() -> str:
    try:
        return pwd.getpwnam("nobody").pw_name
    except KeyError:
        pytest.skip("no user 'nobody' to run as")


@needs_root
def test_a_named_user_is_asked_for_real(tree: Path) -> None:
    users = WorkerUsers(_nobody())
    reachable = _program(tree / "open" / "bin")
    assert interpreter_problem(str(reachable), users) is None
    hidden = _program(tree / "hidden" / "bin")
    os.chmod(tree / "hidden", 0o700)
    problem = interpreter_problem(str(hidden), users)
    assert problem is not None and "'nobody' cannot run" in problem and "denied" in problem


@needs_root
def test_per_queue_users_are_judged_by_the_other_bits(tree: Path) -> None:
    users = WorkerUsers()
    hidden = _program(tree / "hidden" / "bin")
    os.chmod(tree / "hidden", 0o700)
    problem = interpreter_problem(str(hidden), users)
    assert problem is not None and "corral-q-<queue>" in problem and "exit 126" in problem
    assert interpreter_problem(str(_program(tree / "open" / "bin")), users) is None
