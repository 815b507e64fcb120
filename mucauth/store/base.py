"""What the MUC service keeps of its rooms across an empty room and a restart.

The store knows rooms as records of plain data: it never imports the room rules, and the room
rules never import it (DESIGN.md, "Rooms that last"). The room's settings travel as a JSON-able
mapping that only the MUC side interprets, so a new owner-form field needs no schema change; the
few settings the store must query by (a room's name and whether it is listed) are columns.

Reads return Deferreds that fire with records. Writes return nothing: they are queued and
written behind the caller's back (see :mod:`mucauth.store.writes`), because a join or a message
must never wait on, or be refused by, a disk or a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = [
    "AFFILIATIONS",
    "Affiliation",
    "ArchivePage",
    "ArchiveQuery",
    "HistoryRecord",
    "IRoomStore",
    "RoomRecord",
    "RoomSummary",
    "StoreError",
    "Tombstone",
    "UnknownStanzaIdError",
    "check_affiliation",
]

Affiliation = Literal["owner", "admin", "member", "outcast"]

# The affiliations a store keeps (XEP-0045 §5.2); "none" is the absence of a row.
AFFILIATIONS: tuple[str, ...] = ("owner", "admin", "member", "outcast")


class StoreError(Exception):
    """The store cannot be used; ``str()`` is one line for an operator, without secrets."""


class UnknownStanzaIdError(Exception):
    """An archive query named a stanza id the room's archive does not hold (XEP-0313 answers
    it ``item-not-found``)."""

    def __init__(self, stanza_id: str) -> None:
        super().__init__(f"no message {stanza_id!r} in this archive")
        self.stanza_id = stanza_id


@dataclass(frozen=True)
class HistoryRecord:
    """One groupchat message as the room sent it.

    ``stanza_id`` is the id the room gave the message (XEP-0359 ``<stanza-id by=room>``), unique
    per room: the archive (XEP-0313) pages by it, and appending the same id twice keeps the
    first. ``timestamp`` is seconds since the epoch, when the room received it; the archive
    queries ranges of it. ``xml`` is the message stanza as broadcast, so history replays it
    unchanged. ``sender`` is the sender's bare JID, kept for the archive's ``with`` filter and
    for moderation, even in semi-anonymous rooms (it is never sent from here).
    """

    stanza_id: str
    timestamp: float
    nick: str
    sender: str
    xml: str
    occupant_id: str | None = None


@dataclass(frozen=True)
class ArchiveQuery:
    """One page of a room's archive (XEP-0313 filters, XEP-0059 paging), in plain data.

    The filters select the matching messages, in archive order (time, then arrival): ``start``
    and ``end`` are inclusive bounds in seconds since the epoch; ``nick`` keeps the messages of
    one occupant nick, ``sender`` those of one bare JID; ``after_id`` and ``before_id`` are
    exclusive bounds given by stanza id; ``ids``, when not empty, keeps only those ids.

    The page: the first ``limit`` matching messages after ``page_after`` (a stanza id, or from
    the start); or, when ``page_before`` is set or ``last`` is true, the last ``limit`` before
    ``page_before`` (or up to the end). A stanza id the archive does not hold, in any of the
    four id fields, fails the query with :class:`UnknownStanzaIdError`; in ``ids`` it is just
    not found. Every bound given applies: with both ``page_after`` and ``page_before``, the page
    is the last ``limit`` between them. ``limit=0`` is an empty page whose ``complete`` says
    whether anything matches.
    """

    start: float | None = None
    end: float | None = None
    nick: str | None = None
    sender: str | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] = ()
    page_after: str | None = None
    page_before: str | None = None
    last: bool = False
    limit: int = 50


@dataclass(frozen=True)
class ArchivePage:
    """The answer to an :class:`ArchiveQuery`: its messages oldest first, and ``complete``: no
    matching message lies beyond this page in the direction it was taken (after its last one
    when paging forward, before its first one when paging back)."""

    messages: tuple[HistoryRecord, ...]
    complete: bool


@dataclass(frozen=True)
class RoomRecord:
    """A room as stored: what a restarted process needs to serve it again.

    ``jid`` is the bare room JID, the room's identity. ``config`` is the room's settings (the
    owner form's values), opaque here and JSON-able. ``name`` and ``public`` are settings too,
    kept beside ``config`` because the service's room list (disco#items) is a query on them.
    ``affiliations`` maps bare user JIDs to an affiliation. ``history`` is the last messages,
    oldest first, as many as :meth:`IRoomStore.load_room` was asked for. ``created`` is when
    the room was first saved (seconds since the epoch), kept by later saves. ``unreadable``
    names the rows the store itself could not read back, ``(what, id)`` (``("config", "")``
    for settings that are not JSON, ``("message", stanza_id)``): they are left out of the
    record, and the MUC side reports them with the ones it cannot read.
    """

    jid: str
    config: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    public: bool = True
    subject: str = ""
    subject_nick: str = ""
    # When the subject was set (seconds since the epoch); None when not known (a subject
    # saved before it was kept) or no subject.
    subject_time: float | None = None
    created: float = 0.0
    # Who created the room (a bare JID), kept from the first save that gave one; "" for rooms
    # saved before it was kept. The service bounds the rooms one user may have created.
    creator: str = ""
    affiliations: Mapping[str, str] = field(default_factory=dict)
    history: tuple[HistoryRecord, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RoomSummary:
    """A stored room as the operators' list shows it (the admin API): no settings, no rows.
    The service's room index reads the same pages (room list, rooms per creator)."""

    jid: str
    name: str
    public: bool
    created: float
    creator: str = ""


@dataclass(frozen=True)
class Tombstone:
    """What is left of a destroyed persistent room until ``expires`` (seconds since the epoch):
    joins to its address are refused ``gone``, pointing at ``alternate`` (the bare JID of the
    venue its owner named, "" for none), so clients' bookmarks follow the room instead of
    making a new, empty one under the old name. ``reason`` is the owner's, "" for none."""

    jid: str
    alternate: str = ""
    reason: str = ""
    expires: float = 0.0


class IRoomStore(Interface):
    """Persistent rooms: one implementation on SQL (SQLite, PostgreSQL), one in memory for tests.

    Writes are ordered: they reach the database in the order they were made (a delete made
    after a save stays after it), but the caller never waits for them.
    """

    pending_writes = Attribute("Writes made and not yet in the database (an int).")
    dropped_writes = Attribute(
        "Writes given up since the store was built (an int): dropped past the pending bound "
        "while the database was away, or refused by the database as invalid. Each is logged."
    )

    def open() -> Deferred[None]:
        """Connect and bring the schema up to date.

        Fails with :class:`StoreError` (one line, no password) when the database cannot be
        reached or its schema is newer than this code.
        """

    def close() -> Deferred[None]:
        """Write what is pending (for a bounded time), then disconnect."""

    def flush() -> Deferred[None]:
        """Fire once every write made before this call is in the database, or given up on
        (and counted in ``dropped_writes``). While the database is away, it waits."""

    def load_room(jid: str, history: int) -> Deferred[RoomRecord | None]:  # noqa: N805
        """The room saved as ``jid`` with its last ``history`` messages, or None."""

    def room_jids() -> Deferred[list[str]]:
        """Every stored room's JID, sorted: the rooms a process may be asked to serve."""

    def public_rooms() -> Deferred[list[tuple[str, str]]]:
        """``(jid, name)`` of the rooms saved as public, sorted by JID: disco#items."""

    def save_room(
        jid: str,  # noqa: N805
        config: Mapping[str, Any],
        *,
        name: str,
        public: bool,
        subject: str,
        subject_nick: str,
        creator: str = "",
        subject_time: float | None = None,
    ) -> None:
        """Insert or replace the room's settings and subject (not its affiliations or history).

        ``subject_time`` is when the subject was set (seconds since the epoch), None when not
        known; it is replaced with the subject.

        ``creator`` fills in a stored room's creator when it has none; one already stored is
        never replaced (the saves coalesced before a write carry the last one given).

        Several saves of a room before the first reaches the database are written once.
        """

    def set_affiliation(room: str, user: str, affiliation: str) -> None:  # noqa: N805
        """Give ``user`` (a bare JID) ``affiliation`` in ``room``; ``"none"`` removes it."""

    def append_message(room: str, message: HistoryRecord, keep: int | None) -> None:  # noqa: N805
        """Add ``message`` to the room's messages, then keep only its last ``keep`` of them.

        ``keep=None`` keeps every message: a room whose messages are archived (XEP-0313) uses
        the same table, and its history is just the last rows of it. ``keep=0`` keeps none.
        """

    def delete_room(jid: str) -> None:  # noqa: N805
        """Remove the room, its affiliations, its messages and its tombstone."""

    def bury_room(jid: str, alternate: str, reason: str, expires: float) -> None:  # noqa: N805
        """Remove the room as :meth:`delete_room` does and leave its :class:`Tombstone`
        (replacing any earlier one) until ``expires``."""

    def tombstones(now: float) -> Deferred[list[Tombstone]]:  # noqa: N805
        """The tombstones that expire after ``now``, sorted by JID."""

    def prune_tombstones(now: float) -> Deferred[int]:  # noqa: N805
        """Remove the tombstones expired at ``now``; fires with how many."""

    # -- the archive (XEP-0313): the room's messages, read page by page

    def query_archive(room: str, query: ArchiveQuery) -> Deferred[ArchivePage]:  # noqa: N805
        """One page of the room's messages; fails with :class:`UnknownStanzaIdError` as documented
        on :class:`ArchiveQuery`. Waits for the writes made before it, like every read."""

    def archive_bounds(room: str) -> Deferred[tuple[HistoryRecord, HistoryRecord] | None]:  # noqa: N805
        """The room's oldest and newest messages (XEP-0313 metadata), or None when it has
        none."""

    def find_message(room: str, stanza_id: str) -> Deferred[HistoryRecord | None]:  # noqa: N805
        """The message of that stanza id in the room, or None."""

    def retract_message(room: str, stanza_id: str, xml: str) -> None:  # noqa: N805
        """Replace the stored stanza of a message by ``xml`` (its tombstone, XEP-0424/0425);
        its id, time, nick and sender stay, so pages and filters still find it. A message not
        (or no longer) stored is left alone. Queued and ordered like the other writes: a
        retraction made after the append it retracts is written after it."""

    # -- repairs (the admin API): operators never need SQL

    def list_rooms(after: str | None, limit: int) -> Deferred[list[RoomSummary]]:  # noqa: N805
        """The stored rooms whose JID sorts after ``after`` (from the first when None), the
        first ``limit`` of them in JID order: a page costs the same on the 10,000th room."""

    def has_room(jid: str) -> Deferred[bool]:  # noqa: N805
        """Whether the room is stored (after the writes made before this call)."""

    def delete_messages(room: str, stanza_ids: Sequence[str] | None) -> Deferred[int]:  # noqa: N805
        """Remove those messages of the room (every one when ``stanza_ids`` is None), after
        the writes made before this call; fires with how many were removed. Ids not stored
        are ignored."""

    def prune_archive(before: float | None, keep: int | None) -> Deferred[int]:  # noqa: N805
        """Retention: remove, in every room, the messages older than ``before`` (seconds since
        the epoch) and all but the newest ``keep`` of each room; None leaves that rule out.
        Fires with how many messages were removed. Runs in small transactions so the writes
        of the rooms are never held up for long."""


def check_affiliation(affiliation: str) -> None:
    """Refuse at the call, not in the database thread later where nobody could act on it."""
    if affiliation != "none" and affiliation not in AFFILIATIONS:
        raise ValueError(f"not an affiliation: {affiliation!r}")
