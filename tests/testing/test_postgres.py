"""The PostgreSQL harness starts a real server, serves SQL over TCP and its unix socket, runs it
unprivileged, and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.testing.daemons import process_dead, wait_until
from corral.testing.postgres import SUPERUSER, PostgresServer, remove_later

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed: pip install -e '.[server]'"
)
sa = pytest.importorskip(
    "sqlalchemy", reason="sqlalchemy is not installed: pip install -e '.[server]'"
)

pytestmark = pytest.mark.postgres


def test_sql_round_trip_through_the_sqlalchemy_url(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE round_trip (id int PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO round_trip VALUES (1, 'gpu'), (2, 'queue')"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM round_trip ORDER BY id")).all()
            conn.execute(sa.text("DROP TABLE round_trip"))
            conn.commit()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "gpu"), (2, "queue")]


def test_each_test_database_starts_empty(postgres_database_url: str) -> None:
    engine = sa.create_engine(postgres_database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.connect() as conn:
            current = conn.execute(sa.text("SELECT current_database()")).scalar()
        assert current == postgres_database_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()


def test_unix_socket_in_the_temp_dir_accepts_connections(postgres_server: PostgresServer) -> None:
    with psycopg.connect(
        host=str(postgres_server.socket_dir),
        port=postgres_server.port,
        user=SUPERUSER,
        dbname=postgres_server.database,
    ) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert str(postgres_server.socket_dir).startswith(str(postgres_server.root))


def _postmaster_pid(server: PostgresServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when the tests run as root")
def test_server_runs_as_an_unprivileged_user_when_tests_run_as_root(
    postgres_server: PostgresServer,
) -> None:
    owner_uid = Path(f"/proc/{_postmaster_pid(postgres_server)}").stat().st_uid
    assert owner_uid != 0


@pytest.mark.parametrize(
    "name",
    ["Upper", "1starts_with_digit", "has-dash", "x" * 64, "drop table;"],
    ids=["uppercase", "leading-digit", "dash", "too-long", "sql"],
)
def test_invalid_database_names_are_rejected_with_the_fix(
    postgres_server: PostgresServer, name: str
) -> None:
    with pytest.raises(ValueError, match="lowercase letters, digits and '_'"):
        postgres_server.create_database(name)


def test_failure_inside_the_block_still_stops_the_server_and_removes_the_dir() -> None:
    with pytest.raises(RuntimeError, match="test body failed"), PostgresServer() as server:
        root, pid = server.root, _postmaster_pid(server)
        raise RuntimeError("test body failed")
    assert not root.exists()
    assert process_dead(pid)
    wait_until(lambda: not root.with_name(root.name + ".removing").exists(), timeout=60,
               what="the stopped server's dir to be deleted")


def test_a_dir_removed_later_is_gone_at_once_and_deleted_soon_after(tmp_path: Path) -> None:
    victim = tmp_path / "data"
    for i in range(50):
        (victim / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (victim / f"d{i % 5}" / f"f{i}").write_bytes(b"x" * 8192)
    remove_later(victim)
    assert not victim.exists()  # under its own name at once
    wait_until(lambda: not (tmp_path / "data.removing").exists(), timeout=60,
               what="the renamed dir to be deleted")
