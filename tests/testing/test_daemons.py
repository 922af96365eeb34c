"""Process plumbing shared by the harnesses: free ports, bounded readiness polling whose errors
carry the server log, stopping by PID, and clear 'unavailable' errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.testing.chromium import find_chromium
from corral.testing.daemons import (
    Daemon,
    find_binary,
    free_tcp_ports,
    kill_pids,
    pids_with_env,
    process_dead,
    wait_until,
)
from corral.testing.errors import HarnessStartFailed, HarnessUnavailable


def test_free_ports_are_distinct_and_unprivileged() -> None:
    ports = free_tcp_ports(8)
    assert len(set(ports)) == 8
    assert all(1024 < p < 65536 for p in ports)


def test_timeout_error_names_what_was_awaited_and_carries_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "FATAL: port in use\n")
    with pytest.raises(HarnessStartFailed) as err:
        wait_until(lambda: False, timeout=0, what="the server to listen", logs=[log])
    message = str(err.value)
    assert "waiting for the server to listen" in message
    assert "FATAL: port in use" in message
    assert "line 10\n" not in message  # only the tail


def test_checks_that_raise_oserror_count_as_not_ready_yet() -> None:
    calls = iter([ConnectionRefusedError(), True])

    def check() -> bool:
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return result

    wait_until(check, timeout=10, what="a second attempt")


def test_daemon_that_exits_early_fails_at_once_with_its_output(tmp_path: Path) -> None:
    daemon = Daemon(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config: Port=x'); sys.exit(3)"],
        log=tmp_path / "broken.log",
    ).start()
    with pytest.raises(HarnessStartFailed, match="broken exited with code 3") as err:
        wait_until(lambda: False, timeout=60, what="readiness", watch=[daemon])
    assert "bad config: Port=x" in str(err.value)


def test_stop_terminates_by_pid_and_is_idempotent(tmp_path: Path) -> None:
    daemon = Daemon(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        log=tmp_path / "sleeper.log",
        env={"CORRAL_TEST_MARKER": str(tmp_path)},
    ).start()
    try:
        # /proc/PID/environ shows the parent's environment until the child has exec'd: on a
        # loaded machine the first read came before (CI of 7bf60af), so wait for the marker
        wait_until(lambda: bool(pids_with_env("CORRAL_TEST_MARKER", str(tmp_path))),
                   timeout=30, what="the sleeper's environment", watch=[daemon])
        assert pids_with_env("CORRAL_TEST_MARKER", str(tmp_path)) == [daemon.pid]
    finally:
        daemon.stop(grace=10)  # a failed check above leaves no sleeper behind either
    daemon.stop(grace=10)
    assert not daemon.alive()
    assert process_dead(daemon.pid)


def test_kill_pids_waits_until_the_processes_are_dead(tmp_path: Path) -> None:
    daemon = Daemon(
        "victim", [sys.executable, "-c", "import time; time.sleep(600)"], log=tmp_path / "v.log"
    ).start()
    kill_pids([daemon.pid])
    assert process_dead(daemon.pid)
    daemon.stop()  # reaps it


def test_missing_binary_is_unavailable_with_the_install_hint() -> None:
    with pytest.raises(HarnessUnavailable, match=r"no-such-daemon not found.*install-system-deps"):
        find_binary("no-such-daemon", ["/nonexistent"])


def test_chromium_override_that_is_not_executable_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CORRAL_CHROMIUM", str(tmp_path / "missing-chromium"))
    with pytest.raises(HarnessUnavailable, match=r"CORRAL_CHROMIUM=.*not an executable"):
        find_chromium()
