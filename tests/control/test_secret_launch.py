"""Secret references at launch (fake backend, manual clock): the value reaches the launch
spec's secret_env and nothing else, a secret set again reaches the next attempt, and one
deleted after the submission fails the launch naming the variable and the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.store import Store
from corral.store import secrets as S
from corral.store import workloads as W

from .rig import Rig

VALUE = "tok-7f3a9c-secret"


@pytest.fixture
def rig(store: Store, tmp_path: Path) -> Rig:
    store.secret_box = S.SecretBox.load(tmp_path)
    return Rig(store)


def _set(rig: Rig, value: str, queue: str | None = "q") -> None:
    assert rig.store.secret_box is not None
    with rig.store.write() as c:
        S.put_secret(c, rig.store.secret_box, "tok", value, queue=queue, by="root", now=0.0)


def test_the_value_is_resolved_at_launch_into_secret_env_only(rig: Rig) -> None:
    _set(rig, "global-value", queue=None)
    _set(rig, VALUE)  # the queue's own wins over the global one
    wid = rig.submit(env={"TOKEN": {"secret": "tok"}, "PLAIN": "1"})
    rig.step(2)
    assert rig.state(wid) == "running"
    launched = rig.backend.launches[-1]
    assert launched.secret_env == {"TOKEN": VALUE}
    assert launched.env == {"PLAIN": "1"}
    assert VALUE not in repr(launched)
    with rig.store.read() as c:
        seen = [str(e) for e in W.list_events(c, workload_id=wid)] + [str(rig.get(wid))]
    assert not any(VALUE in s for s in seen)


def test_a_secret_deleted_after_submission_fails_the_launch_naming_it(rig: Rig) -> None:
    _set(rig, VALUE)
    wid = rig.submit(env={"TOKEN": {"secret": "tok"}})
    with rig.store.write() as c:
        S.delete_secret(c, "tok", queue="q")
    rig.step(3)
    rec = rig.get(wid)
    assert rec.state == "failed"
    assert "env.TOKEN" in rec.reason_message and "'tok'" in rec.reason_message
    assert rig.backend.launches == []


def test_a_secret_set_again_reaches_the_next_attempt(rig: Rig) -> None:
    _set(rig, "first")
    wid = rig.submit(env={"TOKEN": {"secret": "tok"}}, restart_on=[{"exit_code": [3]}],
                     restart_backoff=0)
    rig.step(2)
    _set(rig, "second")
    rig.backend.fail(wid, exit_code=3)
    rig.step(4)
    assert [ls.secret_env["TOKEN"] for ls in rig.backend.launches] == ["first", "second"]
    assert rig.get(wid).attempt == 1
