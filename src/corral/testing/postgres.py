"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir.

What it starts: one postmaster owned by this object, listening on a free loopback TCP port and on
a unix socket inside its temp dir, with ``trust`` authentication (nothing is reachable from
outside the machine) and durability switched off (``fsync=off``, ``synchronous_commit=off``,
``full_page_writes=off``): a test database must be fast and is never worth recovering.

PostgreSQL refuses to run as root. When the tests run as root (CI does), the cluster is owned by
the ``postgres`` system user (Debian's package creates it) or, failing that, ``nobody``: the temp
dir is chowned to that user and initdb/pg_ctl run under it (``subprocess`` ``user=``/``group=``).

Usage::

    with PostgresServer() as pg:
        engine = sqlalchemy.create_engine(pg.url)          # postgresql+psycopg://...
        other = pg.create_database("scratch")              # URL of a second, empty database
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from corral.testing.daemons import (
    find_binary,
    format_logs,
    free_tcp_ports,
    kill_pids,
    run_env,
    wait_dead,
)
from corral.testing.errors import HarnessStartFailed, HarnessUnavailable

__all__ = ["PostgresServer", "postgres_bin_dir"]

SUPERUSER = "corral"
DEFAULT_DATABASE = "corral"
_FAST_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=32MB",
    "max_connections=100",
)
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def postgres_bin_dir() -> Path:
    """Directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/<ver>/bin, else PATH.

    Raises HarnessUnavailable when neither has them.
    """
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if candidates:
        newest = max(candidates, key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
        return Path(newest).parent
    initdb = find_binary("initdb", hint="install Debian's postgresql (scripts/install-system-deps)")
    return Path(initdb).parent


def _cluster_owner() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise HarnessUnavailable(
        "running as root and neither a 'postgres' nor a 'nobody' user exists; "
        "PostgreSQL refuses to run as root (create one with: useradd --system postgres)"
    )


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; a context manager. Not thread-safe.

    Contract: ``start()`` returns only once the server accepts connections and the default
    database exists; on any failure it has already cleaned up and raises HarnessStartFailed (with
    the server log) or HarnessUnavailable (binaries absent). ``stop()`` is idempotent and removes
    the temp dir.
    """

    def __init__(self, *, database: str = DEFAULT_DATABASE, start_timeout: float = 60.0) -> None:
        self.database = database
        self.start_timeout = start_timeout
        self.bin_dir = postgres_bin_dir()
        self.port = 0
        self.host = "127.0.0.1"
        self._root: Path | None = None
        self._owner = _cluster_owner()
        self._admin_conn: Any = None  # psycopg.Connection, see _admin

    # --- paths ------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("PostgresServer is not started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    # --- URLs ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default database (driver: psycopg 3)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """libpq DSN of the default database, for psycopg.connect or psql."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{self.database}"

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        self._root = Path(tempfile.mkdtemp(prefix="corral-pg-"))
        atexit.register(self.stop)  # pg_ctl daemonizes: nothing else stops it if we exit early
        try:
            self._prepare_dirs()
            self._initdb()
            self._pg_ctl_start()
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL of the postmaster) and remove the dir."""
        if self._root is None:
            return
        atexit.unregister(self.stop)
        if self._admin_conn is not None:
            with contextlib.suppress(Exception):
                self._admin_conn.close()
            self._admin_conn = None
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._pg_ctl_stop()
        finally:
            remove_later(self._root)
            self._root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create a database and return its SQLAlchemy URL: empty, or a copy of ``template``
        (a database of this server with no open connection)."""
        for value in (name, template or "ok"):
            if not _NAME_RE.match(value):
                raise ValueError(
                    f"database name {value!r} is invalid: use lowercase letters, digits and '_' "
                    "(at most 63 characters, not starting with a digit)"
                )
        copy_of = f' TEMPLATE "{template}"' if template else ""
        # A statement on a connection kept for it: the suite makes ~500 databases, and spawning
        # createdb for each took ~0.17 s, the statement ~0.09 s (median of 24 each, load 11).
        try:
            self._admin().execute(f'CREATE DATABASE "{name}"{copy_of}')
        except Exception as exc:  # psycopg's errors: the harness's own, with the server log
            raise HarnessStartFailed(
                f"CREATE DATABASE {name} failed: {exc}\n" + format_logs([self.log_path])
            ) from exc
        return self.url_for(name)

    def _admin(self) -> Any:
        """An autocommit connection to the ``postgres`` database (CREATE DATABASE runs outside
        a transaction; a template may have no connection of its own while it is copied)."""
        if self._admin_conn is None or self._admin_conn.closed:
            import psycopg  # the server extra's driver: imported only when a database is made

            self._admin_conn = psycopg.connect(
                host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
            )
        return self._admin_conn

    # --- steps ----------------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir()
        if self._owner is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _initdb(self) -> None:
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            what="initdb",
        )

    def _pg_ctl_start(self) -> None:
        (self.port,) = free_tcp_ports(1, self.host)
        options = [f"-p {self.port}", f"-k {self.socket_dir}", f"-h {self.host}"]
        options += [f"-c {s}" for s in _FAST_SETTINGS]
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                " ".join(options),
            ],
            what="pg_ctl start",
            timeout=self.start_timeout + 10,
        )

    def _pg_ctl_stop(self) -> None:
        """pg_ctl stop -w returns once postmaster.pid is gone, which the postmaster unlinks in
        its exit callbacks just before it exits: under load it was seen alive after (a clean-clone
        run at load 15-38). Its exit is awaited (and forced after 10 s) so that a stopped server
        is a dead process."""
        pid = self._postmaster_pid()
        try:
            self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "stop",
                    "-w",
                    "-t",
                    "20",
                    "-m",
                    "fast",
                    "-D",
                    str(self.data_dir),
                ],
                what="pg_ctl stop",
                timeout=30,
            )
        except HarnessStartFailed:
            if pid is not None:
                kill_pids([pid], signal.SIGKILL)
            return
        if pid is not None and not wait_dead(pid, 10.0):
            kill_pids([pid], signal.SIGKILL)

    def _postmaster_pid(self) -> int | None:
        """The first line of postmaster.pid: the postmaster, ours alone."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _run(self, argv: list[str], *, what: str, timeout: float = 60.0) -> None:
        """Run a PostgreSQL tool as the cluster owner; raise HarnessStartFailed on failure."""
        kwargs: dict[str, object] = {}
        if self._owner is not None:
            kwargs = {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC",
               **run_env()}  # the postmaster pg_ctl starts carries the session's marker
        try:
            done = subprocess.run(
                argv,
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **kwargs,  # type: ignore[call-overload]
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessStartFailed(
                f"{what} timed out after {timeout:.0f}s\n" + format_logs([self.log_path])
            ) from exc
        if done.returncode != 0:
            raise HarnessStartFailed(
                f"{what} failed with exit code {done.returncode}\n"
                f"--- output ---\n{done.stdout}{done.stderr}\n" + format_logs([self.log_path])
            )


def remove_later(path: Path) -> None:
    """Remove ``path`` (a stopped server's dir) off the test run's time: renamed at once, so it is
    gone under its name, then deleted by a detached, niced ``rm -rf``.

    A session's server holds one database per test that used one (~12 MB, ~430 files each, a
    copy of the migrated template), and deleting them all was the last ~25 s of every worker's
    session (150 copies, 1.9 GB, 65k files: rmtree 22.7 s at load 6), on the run's critical
    path. The ``rm`` carries no session marker, so the reaper (corral.testing.reaper) lets it
    finish after the session exits. Falls back to deleting in place where it cannot.
    """
    trash = path.with_name(path.name + ".removing")
    try:
        path.rename(trash)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    # `sh` starts rm in the background and exits at once: nothing is left for this process to
    # wait for, and rm (reparented) runs on in a session of its own.
    try:
        subprocess.run(["sh", "-c", 'nice -n 19 rm -rf -- "$1" </dev/null >/dev/null 2>&1 &',
                        "sh", str(trash)], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                       start_new_session=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(trash, ignore_errors=True)
