"""The room store on SQL, through ``twisted.enterprise.adbapi``: SQLite or PostgreSQL.

Queries run in adbapi's threads, never in the reactor's. Writes go through a
:class:`~mucauth.store.writes.WriteQueue`; what the reactor pays per write is building a tuple
(and, for a save, encoding the settings as JSON, so that a value JSON cannot hold fails at the
caller, not later in a thread). Reads wait for the writes made before them, so a room saved and
then loaded is loaded as saved (and a read while the database is away waits for it, as those
writes do: callers that must answer in time add their own timeout).

Writes wait ``batch_delay`` (0.05 s) before their batch starts when the queue is idle, so the
messages of a few moments share a transaction (see :mod:`mucauth.store.writes`); reads and
``close()`` do not wait for it.

Retention (:meth:`SQLRoomStore.prune_archive`) is a maintenance job beside the write queue, not
in it: it first waits for the writes made before it (like a read), then runs its own short
transactions through the pool, room after room and at most ``prune_chunk`` rows each, oldest
first; the write batches of the rooms take turns with them on the pool. Nothing in the queue
depends on it: the rows it removes are old, those the queue writes are new, and a retraction or
a trim of a row it removed does nothing. A transaction that fails for a reason that may pass is
tried again after a growing pause (``retry_first`` doubling up to ``retry_max``), at most
``prune_tries`` times; then, or at once for any other error, the prune fails with a
:class:`StoreError` saying how many messages it had removed. What it removed stays removed, and
the next prune goes on from there.

Room loads go ahead of archive reads. adbapi's pool answers in the order it was asked, and
SQLite's has one connection: behind a flood of archive queries a room's load (a join waiting)
waited for all of them. So archive reads pass a lane (:class:`DeferredSemaphore`) that lets at
most ``archive_slots`` of them into the pool at once (one with SQLite's single connection, all
but one of PostgreSQL's): a load waits for those few at most, never for the queue behind them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mucauth.store import queries
from mucauth.store.archive import check_limit, check_query
from mucauth.store.base import (
    ArchivePage,
    ArchiveQuery,
    HistoryRecord,
    IRoomStore,
    RoomRecord,
    RoomSummary,
    StoreError,
    Tombstone,
    UnknownStanzaIdError,
    check_affiliation,
)
from mucauth.store.dialects import Database
from mucauth.store.migrations import LATEST, migrate
from mucauth.store.queries import load_room, select_column, select_rows, write_batch
from mucauth.store.writes import Write, WriteQueue

__all__ = ["SQLRoomStore"]


class _Connection(adbapi.Connection):
    """adbapi's connection wrapper, quiet about a connection that died.

    adbapi logs two tracebacks for each failed rollback, every retry while the database is
    away. Here a connection whose rollback fails (or that its driver calls broken) is dropped
    and the original error goes on to the write queue, which logs one line and retries; the next
    interaction connects afresh, which is how the store comes back with the database.
    """

    def rollback(self) -> None:
        connection = self._connection
        try:
            connection.rollback()
        except Exception:
            self._pool.disconnect(connection)
            return
        if getattr(connection, "broken", False):
            self._pool.disconnect(connection)


class _Pool(adbapi.ConnectionPool):  # type: ignore[misc]
    connectionFactory = _Connection


@implementer(IRoomStore)
class SQLRoomStore:
    log = Logger()

    def __init__(
        self,
        database: Database,
        reactor: Any = None,
        *,
        max_pending_writes: int = 50_000,
        close_timeout: float = 10.0,
        retry_first: float = 0.5,
        retry_max: float = 30.0,
        batch_delay: float = 0.05,
        prune_chunk: int = 2000,
        prune_rooms: int = 100,
        prune_tries: int = 8,
    ) -> None:
        if prune_chunk < 1 or prune_rooms < 1 or prune_tries < 1:
            raise ValueError("prune_chunk, prune_rooms and prune_tries must be 1 or more")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.database = database
        self._reactor = reactor
        self._close_timeout = close_timeout
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._prune_chunk = prune_chunk  # rows per pruning transaction
        self._prune_rooms = prune_rooms  # rooms looked at per pruning read
        self._prune_tries = prune_tries
        self._pool: _Pool | None = None
        self._archive_lane: DeferredSemaphore | None = None
        self._writes = WriteQueue(
            self._write_batch,
            reactor,
            max_pending=max_pending_writes,
            is_transient=lambda f: database.is_transient(f.value),
            describe=lambda f: database.describe(f.value),
            where=database.where,
            retry_first=retry_first,
            retry_max=retry_max,
            batch_delay=batch_delay,
        )

    @property
    def pending_writes(self) -> int:
        return self._writes.pending

    @property
    def dropped_writes(self) -> int:
        return self._writes.dropped

    @property
    def batches_written(self) -> int:
        return self._writes.batches

    # -- life cycle --------------------------------------------------------------------------

    @inlineCallbacks
    def open(self) -> Any:
        args, options = self.database.pool_arguments()
        pool = _Pool(self.database.module, *args, cp_reactor=self._reactor, **options)
        try:
            found = yield pool.runInteraction(migrate, self.database)
        except StoreError:
            pool.close()
            raise
        except Exception as e:
            pool.close()
            raise StoreError(
                f"cannot open the room store {self.database.where}: {self.database.describe(e)}"
            ) from None
        self._pool = pool
        self._archive_lane = DeferredSemaphore(max(1, pool.max - 1))
        if found != LATEST:
            self.log.info(
                "room store {store}: schema migrated from version {found} to {latest}",
                store=self.database.where,
                found=found,
                latest=LATEST,
            )

    @inlineCallbacks
    def close(self) -> Any:
        pending = self._writes.flush()
        pending.addTimeout(self._close_timeout, self._reactor)
        try:
            yield pending
        except Exception:
            self.log.error(
                "room store {store}: closing with {count} writes not saved "
                "(the database did not take them within {timeout} s)",
                store=self.database.where,
                count=self._writes.pending,
                timeout=self._close_timeout,
            )
        self._writes.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    def flush(self) -> Deferred[None]:
        return self._writes.flush()

    # -- reads -------------------------------------------------------------------------------

    def load_room(self, jid: str, history: int) -> Deferred[RoomRecord | None]:
        return self._read(load_room, jid, history)

    def room_jids(self) -> Deferred[list[str]]:
        return self._read(select_column, "SELECT jid FROM rooms ORDER BY jid")

    def public_rooms(self) -> Deferred[list[tuple[str, str]]]:
        return self._read(select_rows, "SELECT jid, name FROM rooms WHERE is_public ORDER BY jid")

    def _read(self, interaction: Any, *args: Any) -> Deferred[Any]:
        pool = self._pool
        if pool is None:
            return fail(StoreError("the room store is not open"))
        d = self._writes.flush()
        d.addCallback(lambda _: pool.runInteraction(interaction, self.database, *args))
        d.addErrback(self._read_again, pool, interaction, args, pool.max)
        d.addErrback(self._read_failed)
        return d

    def _read_again(
        self,
        failure: Failure,
        pool: _Pool,
        interaction: Any,
        args: tuple[Any, ...],
        left: int,
    ) -> Any:
        """Again on another connection: after a server restart each pooled connection (one per
        pool thread) fails once before it is dropped, and a read must not fail for that while the
        server is back. So a transient error is retried as many times as the pool has
        connections."""
        error = failure.value
        if left <= 0 or not isinstance(error, Exception) or not self.database.is_transient(error):
            return failure
        d = pool.runInteraction(interaction, self.database, *args)
        d.addErrback(self._read_again, pool, interaction, args, left - 1)
        return d

    def _read_failed(self, failure: Failure) -> Failure:
        if failure.check(StoreError, UnknownStanzaIdError):
            return failure
        error = failure.value
        assert isinstance(error, BaseException)
        return Failure(
            StoreError(
                f"reading the room store {self.database.where} failed: "
                f"{self.database.describe(error)}"
            )
        )

    # -- the archive: reads, and retention beside the write queue -------------------------------

    def query_archive(self, room: str, query: ArchiveQuery) -> Deferred[ArchivePage]:
        check_query(query)
        return self._archive_read(queries.query_archive, room, query)

    def archive_bounds(self, room: str) -> Deferred[tuple[HistoryRecord, HistoryRecord] | None]:
        return self._archive_read(queries.archive_bounds, room)

    def find_message(self, room: str, stanza_id: str) -> Deferred[HistoryRecord | None]:
        return self._archive_read(queries.find_message, room, stanza_id)

    @property
    def archive_slots(self) -> int:
        """Archive reads let into the pool at once; the rest wait in the lane."""
        lane = self._archive_lane
        return lane.limit if lane is not None else 0

    def _archive_read(self, interaction: Any, *args: Any) -> Deferred[Any]:
        """A read through the archive's lane, behind at most ``archive_slots`` others."""
        lane = self._archive_lane
        if lane is None:
            return fail(StoreError("the room store is not open"))
        return lane.run(self._read, interaction, *args)

    # -- repairs ------------------------------------------------------------------------------

    def list_rooms(self, after: str | None, limit: int) -> Deferred[list[RoomSummary]]:
        check_limit(limit)
        return self._read(queries.list_rooms, after or "", limit)

    def has_room(self, jid: str) -> Deferred[bool]:
        return self._read(queries.has_room, jid)

    def delete_messages(self, room: str, stanza_ids: Sequence[str] | None) -> Deferred[int]:
        # A read's path: after the writes made before it, tried again on a transient error
        # like a read (deleting twice removes nothing more).
        ids = None if stanza_ids is None else list(stanza_ids)
        return self._read(queries.delete_messages, room, ids)

    def prune_archive(self, before: float | None, keep: int | None) -> Deferred[int]:
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be 0 or more, or None, not {keep}")
        if self._pool is None:
            return fail(StoreError("the room store is not open"))
        return self._prune(before, keep)

    @inlineCallbacks
    def _prune(self, before: float | None, keep: int | None) -> Any:
        yield self._writes.flush()
        removed = 0
        if before is None and keep is None:
            return removed
        room: str | None = ""
        while True:
            room, cutoff = yield self._maintain(
                removed, queries.prune_plan, room, before, keep, self._prune_rooms
            )
            if room is None:
                break
            while cutoff is not None:
                count = yield self._maintain(
                    removed, queries.prune_chunk, room, cutoff, self._prune_chunk
                )
                removed += count
                if count < self._prune_chunk:
                    break
        self.log.info(
            "room store {store}: archive pruned, {removed} messages removed",
            store=self.database.where,
            removed=removed,
        )
        return removed

    @inlineCallbacks
    def _maintain(self, removed: int, interaction: Any, *args: Any) -> Any:
        """One short transaction of a maintenance job, tried again while its failure may pass."""
        for attempt in range(1, self._prune_tries + 1):
            pool = self._pool
            if pool is None:
                raise StoreError(
                    f"pruning the archive of {self.database.where} stopped after {removed} "
                    "messages removed: the room store was closed"
                )
            try:
                result = yield pool.runInteraction(interaction, self.database, *args)
            except Exception as e:
                if attempt == self._prune_tries or not self.database.is_transient(e):
                    raise StoreError(
                        f"pruning the archive of {self.database.where} stopped after "
                        f"{removed} messages removed: {self.database.describe(e)}"
                    ) from None
                delay = min(self._retry_max, self._retry_first * 2 ** (attempt - 1))
                self.log.warn(
                    "room store {store}: pruning the archive failed (try {attempt}), "
                    "next try in {delay:.1f} s: {error}",
                    store=self.database.where,
                    attempt=attempt,
                    delay=delay,
                    error=self.database.describe(e),
                )
                yield deferLater(self._reactor, delay, lambda: None)
            else:
                return result
        raise AssertionError("unreachable")  # the last try returned or raised

    # -- writes: queued here, written by _write_batch ------------------------------------------

    def save_room(
        self,
        jid: str,
        config: Mapping[str, Any],
        *,
        name: str,
        public: bool,
        subject: str,
        subject_nick: str,
        creator: str = "",
        subject_time: float | None = None,
    ) -> None:
        encoded = json.dumps(dict(config), separators=(",", ":"), sort_keys=True)
        now = self._reactor.seconds()
        stamp = None if subject_time is None else float(subject_time)
        args = (encoded, name, bool(public), subject, subject_nick, now, creator, stamp)
        self._writes.add("save", jid, args)

    def set_affiliation(self, room: str, user: str, affiliation: str) -> None:
        check_affiliation(affiliation)
        self._writes.add("affiliation", room, (user, affiliation))

    def append_message(self, room: str, message: HistoryRecord, keep: int | None) -> None:
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be 0 or more, or None, not {keep}")
        self._writes.add("message", room, (message, keep))

    def delete_room(self, jid: str) -> None:
        self._writes.add("delete", jid, None)

    def bury_room(self, jid: str, alternate: str, reason: str, expires: float) -> None:
        self._writes.add("bury", jid, (alternate, reason, float(expires)))

    def tombstones(self, now: float) -> Deferred[list[Tombstone]]:
        return self._read(queries.tombstones, float(now))

    def prune_tombstones(self, now: float) -> Deferred[int]:
        # A read's path, as delete_messages: after the writes made before it (a tombstone left
        # just now is not pruned ahead of its own write), retried on a transient error.
        return self._read(queries.prune_tombstones, float(now))

    def retract_message(self, room: str, stanza_id: str, xml: str) -> None:
        self._writes.add("retract", room, (stanza_id, xml))

    def _write_batch(self, batch: Sequence[Write]) -> Deferred[None]:
        pool = self._pool
        if pool is None:
            return fail(StoreError("the room store is not open"))
        return pool.runInteraction(write_batch, self.database, batch)
