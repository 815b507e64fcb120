"""A throw-away PostgreSQL cluster for the store tests: Debian's ``postgresql`` package, run as
its unprivileged ``postgres`` user (PostgreSQL refuses root), data and socket in a temp dir,
listening on 127.0.0.1 on a port chosen at run time. The package's own ``main`` cluster (port
5432, started by the package install) is neither used nor disturbed.

The server is started through ``examples._stack.start_process``, so the suite's leftover check
sees it; ``stop()`` shuts it down fast (``pg_ctl stop -m fast``), ``start()`` again brings it back
on the same port with the same data (a database that went away and came back).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from examples._stack import ProcessError, free_port, start_process, stop_process, tail

__all__ = ["PostgresCluster", "postgres_bin_dir"]

PACKAGE_HINT = (
    "the store tests need a real PostgreSQL: install Debian's postgresql package "
    "(apt-get install postgresql; ./dev.sh test does it)"
)
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",  # a test cluster: speed over durability
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "16MB",
}


def postgres_bin_dir() -> Path:
    """The newest installed server's bin directory (/usr/lib/postgresql/<version>/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise ProcessError(f"no /usr/lib/postgresql/*/bin/initdb: {PACKAGE_HINT}")
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
    return Path(newest).parent


class PostgresCluster:
    """One server; databases are created per test with :meth:`create_database`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.bin = postgres_bin_dir()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="mucauth-pg-"))
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log_path = self.directory / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise ProcessError(f"no 'postgres' user: {PACKAGE_HINT}") from None
            self._as_user = ["runuser", "-u", "postgres", "--"]
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.socket_dir.mkdir()
        if self._as_user:
            os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        self._initdb()

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                *self._as_user,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProcessError(f"initdb failed:\n{result.stdout}{result.stderr}")
        lines = [f"{key} = {value}" for key, value in SETTINGS.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.socket_dir}'"]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# mucauth tests\n" + "\n".join(lines) + "\n")

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        user = "postgres" if password is None else f"postgres:{password}"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresCluster:
        self.process = start_process(
            [*self._as_user, str(self.bin / "postgres"), "-D", str(self.data)],
            self.log_path,
            "postgres",
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return self
            except Exception as e:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = tail(self.log_path.read_text(errors="replace"))
                    self.stop()
                    raise ProcessError(f"PostgreSQL did not start ({e}); its log:\n{log}") from e
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the data stays."""
        if self.process is None:
            return
        if self.process.poll() is None:
            pg_ctl = [*self._as_user, str(self.bin / "pg_ctl")]
            subprocess.run(
                [*pg_ctl, "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "20"],
                capture_output=True,
                check=False,
            )
        stop_process(self.process)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def create_database(self) -> str:
        """A new, empty database: each test gets its own."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with self.connect() as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return name

    def execute(self, database: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.connect(database) as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []
