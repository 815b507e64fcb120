"""The archive's retention ([archive] max_age, max_messages): old messages removed in the
background, every ``prune_interval`` seconds while the stream is up.

The store does the removing in small transactions of its own (``IRoomStore.prune_archive``),
so rooms keep writing meanwhile; a pass still running when the next is due is not doubled. The
rooms in memory drop the same old messages from the history joiners get. With several
processes on one database each prunes every room: the work is idempotent, and the second pass
finds little to do.
"""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from mucauth.muc.core import Core

__all__ = ["Retention"]


class Retention:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._loop: LoopingCall | None = None
        self._running: Deferred[int] | None = None
        self._tombstones_running = False
        self.removed = 0  # messages removed since start, for whoever watches

    @property
    def active(self) -> bool:
        settings = self._core.settings
        archive = settings.archive
        return (
            archive.max_age > 0 or archive.max_messages > 0 or settings.rooms.tombstone_lifetime > 0
        )

    def start(self) -> None:
        if self._loop is not None or not self.active:
            return
        loop = LoopingCall(self.prune)
        loop.clock = self._core.clock
        self._loop = loop
        loop.start(self._core.settings.archive.prune_interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def prune(self) -> Deferred[int] | None:
        """One pass of the archive's retention (and the expired tombstones of destroyed rooms
        go, each pass); None when one is running already (or no message is to be pruned)."""
        core = self._core
        if self._running is not None:
            return None
        self._prune_tombstones()
        archive = core.settings.archive
        before = core.clock.seconds() - archive.max_age if archive.max_age > 0 else None
        keep = archive.max_messages or None
        if before is None and keep is None:
            return None
        if before is not None:
            cutoff = datetime.fromtimestamp(before, UTC)
            for room in core.rooms.values():
                room.drop_history_before(cutoff)
        d = core.rooms.store.prune_archive(before, keep)
        self._running = d

        def done(count: int) -> int:
            self.removed += count
            if count:
                core.log.info("archive: {count} expired messages removed", count=count)
            return count

        def failed(failure: Failure) -> int:
            core.log.warn(
                "archive: removing expired messages failed ({why}); trying again in {interval} s",
                why=failure.getErrorMessage() or failure.type.__name__,
                interval=archive.prune_interval,
            )
            return 0

        def finished(count: int) -> int:
            self._running = None
            return count

        return d.addCallbacks(done, failed).addBoth(finished)

    def _prune_tombstones(self) -> None:
        """Expired tombstones out of the store; tombstones are checked for expiry where they
        are read, so this only keeps the table from growing."""
        core = self._core
        if self._tombstones_running:
            return
        self._tombstones_running = True

        def done(count: int) -> None:
            if count:
                core.log.info("rooms: {count} expired tombstones removed", count=count)

        def failed(failure: Failure) -> None:
            core.log.warn(
                "rooms: removing expired tombstones failed ({why}); trying again next pass",
                why=failure.getErrorMessage() or failure.type.__name__,
            )

        def finished(_: object) -> None:
            self._tombstones_running = False

        core.rooms.keeper.prune_tombstones().addCallbacks(done, failed).addBoth(finished)
