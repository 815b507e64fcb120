"""Everything that differs between SQLite and PostgreSQL, and nothing else.

The queries of :mod:`mucauth.store.sql` and :mod:`mucauth.store.migrations` are written once,
with ``?`` placeholders and SQL both databases speak (``INSERT ... ON CONFLICT ... DO UPDATE``,
row comparisons). What differs: the DB-API module and how to connect, the placeholder, the
auto-numbered key, how a write transaction starts, the migration lock, and which errors are
worth retrying.

psycopg is imported only when a PostgreSQL database is used: SQLite users do not pay for it.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any

from mucauth.effective import redact_url
from mucauth.settings import Secret

__all__ = ["Database", "PostgresDatabase", "SQLiteDatabase"]

# pg_advisory_xact_lock's key for migrations: any constant, the same in every mucauth process.
MIGRATION_LOCK_KEY = 0x6D75_6361_7574_6801  # "mucauth" + 1


class Database:
    """How to reach one database; subclasses fill in the dialect."""

    name = ""  # "sqlite" or "postgresql", for logs
    module = ""  # the DB-API module adbapi imports
    placeholder = "?"
    identity = ""  # column type of an auto-numbered primary key
    begin: str | None = None  # statement opening a transaction, if the driver does not
    begin_write: str | None = None  # the same, for a transaction that will write
    migration_lock: str | None = None  # taken inside the migration transaction
    where = ""  # the database as logs and errors show it, without any password

    def pool_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for ``adbapi.ConnectionPool``, after the module."""
        raise NotImplementedError

    def connect(self) -> Any:
        """One DB-API connection, set up as the pool's are; for start-up checks."""
        raise NotImplementedError

    def sql(self, query: str) -> str:
        return _placeholders(query, self.placeholder)

    def is_transient(self, error: BaseException) -> bool:
        """Might the same transaction succeed later (down, locked, full), or never (a bug)?"""
        raise NotImplementedError

    def describe(self, error: BaseException) -> str:
        """The error on one line, without the password."""
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = self._scrub(text)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__

    def _scrub(self, text: str) -> str:
        return text


@lru_cache(maxsize=256)
def _placeholders(query: str, placeholder: str) -> str:
    # Our queries hold no '?' in literals, so every '?' is a parameter.
    return query if placeholder == "?" else query.replace("?", placeholder)


class SQLiteDatabase(Database):
    """A file, one connection, one thread: SQLite takes one writer at a time anyway.

    WAL lets the archive read while a batch is written; ``synchronous=NORMAL`` is safe in WAL
    against a crash of mucauth (a power cut may lose the last batches, never corrupt the file).
    ``busy_timeout`` is how long a statement waits for another process's lock before failing
    (and the batch is retried later). Transactions are opened by hand (``isolation_level=None``)
    so that schema changes are inside them too, and writes take the lock at BEGIN.
    """

    name = "sqlite"
    module = "sqlite3"
    identity = "INTEGER PRIMARY KEY"  # the rowid: new rows take max + 1
    begin = "BEGIN"
    begin_write = "BEGIN IMMEDIATE"

    def __init__(self, path: str, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.where = f"sqlite:{path}"

    def _options(self) -> dict[str, Any]:
        return {"timeout": self.busy_timeout, "isolation_level": None, "check_same_thread": False}

    def pool_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        options = {**self._options(), "cp_min": 1, "cp_max": 1, "cp_openfun": _sqlite_setup}
        return (self.path,), options

    def connect(self) -> Any:
        connection = sqlite3.connect(self.path, **self._options())
        _sqlite_setup(connection)
        return connection

    def is_transient(self, error: BaseException) -> bool:
        # Locked, busy, disk full, read-only, I/O error, cannot open: all OperationalError.
        return isinstance(error, sqlite3.OperationalError)


def _sqlite_setup(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


class PostgresDatabase(Database):
    """A server shared by several mucauth processes; ``pool_size`` connections per process.

    The password, from the URL or from ``password_file``, goes to libpq as its own argument and
    is scrubbed from every error text. ``connect_timeout`` bounds each try to reach a server
    that does not answer, so a retry (or a start-up failure) comes in seconds.
    """

    name = "postgresql"
    module = "psycopg"
    placeholder = "%s"
    identity = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    migration_lock = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"

    def __init__(
        self,
        url: str,
        password: Secret | None = None,
        pool_size: int = 4,
        connect_timeout: int = 5,
    ) -> None:
        self.url = url
        self.password = password
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.where = redact_url(url, mask="***")

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "application_name": "mucauth",
        }
        if self.password is not None:
            options["password"] = self.password.reveal()
        return options

    def pool_arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        options = {
            **self._options(),
            "cp_min": 1,
            "cp_max": self.pool_size,
            "cp_noisy": False,
        }
        return (self.url,), options

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, **self._options())

    def is_transient(self, error: BaseException) -> bool:
        import psycopg

        # Connection lost or refused, server shutting down, serialization failures, deadlocks.
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _secrets(self) -> list[str]:
        from urllib.parse import unquote, urlsplit

        secrets = []
        if self.password is not None:
            secrets.append(self.password.reveal())
        try:
            password = urlsplit(self.url).password
        except ValueError:
            password = None
        if password:
            secrets.extend({password, unquote(password)})
        return [s for s in secrets if s]
