"""One room's state and rules, as plain Python.

Nothing here sends or parses XML: presence payloads and history messages are opaque objects the
service hands in and gets back. That keeps every rule (who holds which nick, who may change the
subject, which history a joiner gets) testable without a stream.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from twisted.words.protocols.jabber.jid import JID

from mucauth.muc.errors import (
    BadNick,
    BadRequest,
    BadRoomName,
    Forbidden,
    NickInUse,
    NickNotAcceptable,
    NotOccupant,
    RegistrationRequired,
    RoomFull,
    RoomNameNotAcceptable,
)
from mucauth.muc.jids import node_prepare, prepared_jid, resource_prepare

Role = Literal["moderator", "participant", "visitor", "none"]
Affiliation = Literal["owner", "admin", "member", "none", "outcast"]

# RFC 7622 caps every JID part at 1023 octets; anything far beyond our own limit is refused before
# stringprep so a megabyte "nick" costs nothing.
_MAX_RAW_PART = 1023

# Room names and nicks come back with every join, leave and message (and stringprep costs up to
# ~100 µs per name), so prepared names are remembered; bounded, so memory stays flat. Refusals
# raise and are not remembered.
PREPARED_CACHE_SIZE = 4096


@lru_cache(maxsize=PREPARED_CACHE_SIZE)
def prepare_nick(raw: str | None, max_length: int) -> str:
    """Return the nick as the room will store it, or raise why it cannot be one.

    resourceprep is the JID rule; on top we refuse what makes a nick useless to humans (blank,
    control or format characters) and what the operator capped (length).
    """
    if not raw:
        raise BadNick("A nickname is required")
    if len(raw) > max(max_length * 4, _MAX_RAW_PART) or len(raw.encode()) > _MAX_RAW_PART:
        raise NickNotAcceptable("This nickname is too long")
    try:
        nick = resource_prepare(raw)
    except UnicodeError as e:
        raise BadNick("This nickname contains characters that are not allowed") from e
    if not nick or not nick.strip():
        raise NickNotAcceptable("A nickname cannot be blank")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in nick):
        raise NickNotAcceptable("A nickname cannot contain control characters")
    if len(nick) > max_length:
        raise NickNotAcceptable("This nickname is too long")
    return nick


@lru_cache(maxsize=PREPARED_CACHE_SIZE)
def prepare_room_name(raw: str | None, max_length: int) -> str:
    """Return the nodeprepped room name, or raise: the node part is the room's identity."""
    if not raw:
        raise BadRoomName("A room name is required")
    if len(raw.encode()) > _MAX_RAW_PART:
        raise RoomNameNotAcceptable("This room name is too long")
    try:
        name = node_prepare(raw)
    except UnicodeError as e:
        raise BadRoomName("This room name contains characters that are not allowed") from e
    if not name:
        raise BadRoomName("A room name is required")
    if len(name) > max_length:
        raise RoomNameNotAcceptable("This room name is too long")
    return name


@dataclass
class RoomConfig:
    """What a room's owner can configure (``owner.py``'s form); new rooms start from [rooms]."""

    name: str = ""
    description: str = ""
    public: bool = True
    non_anonymous: bool = False
    max_occupants: int = 0  # 0 = unlimited
    # Only moderators (the creator) may change the subject by default, as XEP-0045 suggests;
    # an owner can open it to everyone through the configuration form.
    occupants_may_change_subject: bool = False
    persistent: bool = False  # kept (in the store) when empty and across restarts
    history_length: int = 20  # messages kept and sent to joiners
    allow_pm: str = "anyone"  # anyone | participants | moderators | none
    logging: bool = False  # archived (XEP-0313): kept for the archive
    members_only: bool = False  # only members, admins and owners may join
    moderated: bool = False  # occupants without an affiliation join as visitors (no voice)
    allow_invites: bool = True  # occupants may invite (False: only moderators)
    password_protected: bool = False


@dataclass
class Occupant:
    """One nick in the room and every session (full JID) of one bare JID behind it."""

    nick: str
    bare: str
    role: Role
    affiliation: Affiliation
    occupant_id: str
    sessions: list[JID] = field(default_factory=list)
    # The latest presence children (show, status, caps...) of any of its sessions.
    payload: Sequence[object] = ()

    @property
    def jid(self) -> JID:
        """The session the room shows to those allowed to see real JIDs: the latest one."""
        return self.sessions[-1]

    @property
    def is_moderator(self) -> bool:
        return self.role == "moderator"


@dataclass(frozen=True)
class Subject:
    text: str
    nick: str | None = None  # who set it; None: the room itself
    # When it was set, sent with it at every join (XEP-0203 delay) so clients show the real
    # date, not the join's; None for a subject stored before its time was kept.
    stamp: datetime | None = None


@dataclass(frozen=True)
class HistoryEntry:
    stamp: datetime
    nick: str
    occupant_id: str
    payload: object  # the message as the service reflected it
    chars: int  # its size in characters, for maxchars


@dataclass(frozen=True)
class HistoryOptions:
    """A joiner's ``<history/>`` request; ``None`` means "no limit from this attribute"."""

    max_stanzas: int | None = None
    max_chars: int | None = None
    seconds: int | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class JoinResult:
    occupant: Occupant
    new_occupant: bool  # False: one more session of a nick this bare JID already holds


@dataclass(frozen=True)
class LeaveResult:
    occupant: Occupant
    gone: bool  # False: other sessions still hold the nick


def _role_for(affiliation: Affiliation, moderated: bool = False) -> Role:
    """The role an affiliation comes with (XEP-0045 §5.1.2 defaults)."""
    if affiliation in ("owner", "admin"):
        return "moderator"
    if affiliation == "outcast":
        return "none"
    if affiliation == "none" and moderated:
        return "visitor"
    return "participant"


class Room:
    """A room: who is in it under which nick, what it remembers, and who may do what."""

    def __init__(
        self,
        jid: JID,
        *,
        creator: JID,
        created: datetime,
        config: RoomConfig | None = None,
        history_size: int | None = None,
        salt: bytes | None = None,
        affiliations: Mapping[str, Affiliation] | None = None,
    ) -> None:
        """``creator`` becomes the owner, unless ``affiliations`` (a stored room's) are given.
        ``history_size`` overrides the config's ``history_length``."""
        self.jid = jid if jid.resource is None else prepared_jid(jid.user, jid.host)
        self.created = created
        # Who made it (the room's own JID when a stored row did not say): rooms per user are
        # bounded ([limits] max_rooms_per_user).
        self.creator = creator
        self.config = config if config is not None else RoomConfig()
        if history_size is not None:
            self.config.history_length = history_size
        self.subject: Subject | None = None
        # Random per room so an occupant-id links nobody across rooms (XEP-0421); a persistent
        # room keeps its salt in the store, so its occupant-ids outlive a restart.
        self.salt = salt if salt is not None else secrets.token_bytes(16)
        self._occupants: dict[str, Occupant] = {}
        self._by_session: dict[JID, Occupant] = {}
        self._affiliations: dict[str, Affiliation] = (
            dict(affiliations) if affiliations is not None else {creator.userhost(): "owner"}
        )
        self._history: deque[HistoryEntry] = deque(maxlen=max(self.config.history_length, 0))

    # -- reading

    def __iter__(self) -> Iterator[Occupant]:
        return iter(list(self._occupants.values()))

    def __len__(self) -> int:
        return len(self._occupants)

    @property
    def is_empty(self) -> bool:
        return not self._occupants

    def occupant(self, nick: str) -> Occupant | None:
        return self._occupants.get(nick)

    def occupant_for(self, session: JID) -> Occupant | None:
        return self._by_session.get(session)

    def require_occupant(self, session: JID) -> Occupant:
        occupant = self._by_session.get(session)
        if occupant is None:
            raise NotOccupant()
        return occupant

    def affiliation(self, user: JID) -> Affiliation:
        return self._affiliations.get(user.userhost(), "none")

    @property
    def affiliations(self) -> dict[str, Affiliation]:
        """Bare JID to affiliation, "none" left out (a copy)."""
        return dict(self._affiliations)

    def with_affiliation(self, affiliation: Affiliation) -> list[str]:
        return sorted(j for j, a in self._affiliations.items() if a == affiliation)

    def set_affiliation(self, bare: str, affiliation: Affiliation) -> Occupant | None:
        """Give ``bare`` ``affiliation`` (its role follows); the occupant it changed, if any.

        An outcast in the room is not removed here: banning is the moderation code's, which
        also tells the room (XEP-0045 §9.1)."""
        if affiliation == "none":
            self._affiliations.pop(bare, None)
        else:
            self._affiliations[bare] = affiliation
        for occupant in self._occupants.values():
            if occupant.bare == bare:
                occupant.affiliation = affiliation
                occupant.role = _role_for(affiliation, self.config.moderated)
                return occupant
        return None

    def occupant_of(self, bare: str) -> Occupant | None:
        """The occupant ``bare`` holds, if it is in the room."""
        for occupant in self._occupants.values():
            if occupant.bare == bare:
                return occupant
        return None

    def set_role(self, occupant: Occupant, role: Role) -> None:
        occupant.role = role

    def remove(self, occupant: Occupant) -> list[JID]:
        """Take ``occupant`` out with every session (kicked, banned); the sessions it had."""
        sessions = list(occupant.sessions)
        for session in sessions:
            self._by_session.pop(session, None)
        occupant.sessions.clear()
        self._occupants.pop(occupant.nick, None)
        return sessions

    def occupant_id(self, user: JID) -> str:
        """Stable for one bare JID in this room, meaningless anywhere else."""
        digest = hmac.digest(self.salt, user.userhost().encode(), "sha256")
        return base64.b64encode(digest).decode("ascii")

    def sees_real_jids(self, viewer: Occupant) -> bool:
        """Non-anonymous rooms show everyone's JID; semi-anonymous ones only to moderators."""
        return self.config.non_anonymous or viewer.is_moderator

    @property
    def is_full(self) -> bool:
        limit = self.config.max_occupants
        return limit > 0 and len(self._occupants) >= limit

    # -- joining and leaving

    def check_join(self, user: JID, nick: str) -> None:
        """Raise if ``user`` could not join as ``nick`` now; changes nothing.

        Called before asking the gate and again after it answered, since the room may have
        changed while the question was out.
        """
        holder = self._occupants.get(nick)
        if holder is not None:
            if holder.bare != user.userhost():
                raise NickInUse()
            return  # another session of the same person: XEP-0045 multi-session
        affiliation = self.affiliation(user)
        if affiliation == "outcast":
            raise Forbidden("You are banned from this room")
        if self.config.members_only and affiliation == "none":
            raise RegistrationRequired()
        if self.is_full:
            raise RoomFull()

    def join(
        self, user: JID, nick: str, payload: Sequence[object] = (), role: Role | None = None
    ) -> JoinResult:
        """``role``: the one the gate granted for this join, instead of the affiliation's."""
        if user in self._by_session:
            raise BadRequest("Already in this room")
        self.check_join(user, nick)
        holder = self._occupants.get(nick)
        if holder is not None:
            holder.sessions.append(user)
            holder.payload = tuple(payload)
            self._by_session[user] = holder
            return JoinResult(holder, new_occupant=False)
        affiliation = self.affiliation(user)
        occupant = Occupant(
            nick=nick,
            bare=user.userhost(),
            role=role if role is not None else _role_for(affiliation, self.config.moderated),
            affiliation=affiliation,
            occupant_id=self.occupant_id(user),
            sessions=[user],
            payload=tuple(payload),
        )
        self._occupants[nick] = occupant
        self._by_session[user] = occupant
        return JoinResult(occupant, new_occupant=True)

    def leave(self, user: JID) -> LeaveResult:
        occupant = self.require_occupant(user)
        occupant.sessions.remove(user)
        del self._by_session[user]
        if occupant.sessions:
            return LeaveResult(occupant, gone=False)
        del self._occupants[occupant.nick]
        return LeaveResult(occupant, gone=True)

    def clear(self) -> list[Occupant]:
        """Remove everyone at once (shutdown, lost link) and say who was there."""
        occupants = list(self._occupants.values())
        self._occupants.clear()
        self._by_session.clear()
        return occupants

    # -- occupants acting

    def update_presence(self, user: JID, payload: Sequence[object]) -> Occupant:
        occupant = self.require_occupant(user)
        occupant.payload = tuple(payload)
        return occupant

    def change_nick(self, user: JID, new_nick: str) -> tuple[str, Occupant]:
        """Rename the occupant ``user`` belongs to, with all its sessions.

        Sessions share one nick, so renaming one renames them all; a nick held by anyone else,
        even another occupant of the same bare JID, is a conflict (no merging of occupants).
        """
        occupant = self.require_occupant(user)
        old_nick = occupant.nick
        if new_nick == old_nick:
            return old_nick, occupant
        if new_nick in self._occupants:
            raise NickInUse()
        del self._occupants[old_nick]
        occupant.nick = new_nick
        self._occupants[new_nick] = occupant
        return old_nick, occupant

    def set_subject(self, user: JID, text: str, when: datetime | None = None) -> Subject:
        """``when``: the moment it was set, kept with it (the service passes its clock's)."""
        occupant = self.require_occupant(user)
        if not (occupant.is_moderator or self.config.occupants_may_change_subject):
            raise Forbidden("Only moderators may change the subject of this room")
        self.subject = Subject(text, occupant.nick, when) if text else None
        return self.subject or Subject("", occupant.nick, when)

    def require_owner(self, user: JID) -> None:
        if self.affiliation(user) != "owner":
            raise Forbidden("Only owners may configure this room")

    # -- history

    def add_history(self, entry: HistoryEntry) -> None:
        self._history.append(entry)

    def find_history(self, predicate: Callable[[HistoryEntry], bool]) -> HistoryEntry | None:
        """The newest kept entry ``predicate`` accepts (a moderator retracts recent ones)."""
        for entry in reversed(self._history):
            if predicate(entry):
                return entry
        return None

    def replace_history(self, old: HistoryEntry, new: HistoryEntry) -> bool:
        """Put ``new`` in ``old``'s place (a retracted message's tombstone); False if ``old``
        is no longer kept."""
        for index, entry in enumerate(self._history):
            if entry is old:
                self._history[index] = new
                return True
        return False

    def drop_history_before(self, moment: datetime) -> None:
        """Forget entries older than ``moment`` (the archive's retention)."""
        while self._history and self._history[0].stamp < moment:
            self._history.popleft()

    def remove_history(self, predicate: Callable[[HistoryEntry], bool]) -> int:
        """Forget the entries ``predicate`` accepts (messages an operator deleted); how many."""
        kept = [entry for entry in self._history if not predicate(entry)]
        removed = len(self._history) - len(kept)
        self._history = deque(kept, maxlen=self._history.maxlen)
        return removed

    def set_history_length(self, length: int) -> None:
        """Keep at most ``length`` messages from now on (the newest, when there were more)."""
        self.config.history_length = length
        if self._history.maxlen != length:
            self._history = deque(self._history, maxlen=max(length, 0))

    @property
    def history_entries(self) -> list[HistoryEntry]:
        return list(self._history)

    @property
    def has_history(self) -> bool:
        return bool(self._history)

    def history(self, options: HistoryOptions, now: datetime) -> list[HistoryEntry]:
        """The newest entries that satisfy every limit at once, oldest first.

        ``seconds`` keeps entries at most that old; ``since`` keeps entries strictly newer, so a
        client passing the stamp of the last message it saw gets no duplicate.
        """
        oldest = now - timedelta(seconds=options.seconds) if options.seconds is not None else None
        picked: list[HistoryEntry] = []
        chars = 0
        for entry in reversed(self._history):
            if options.max_stanzas is not None and len(picked) >= options.max_stanzas:
                break
            if oldest is not None and entry.stamp < oldest:
                break
            if options.since is not None and entry.stamp <= options.since:
                break
            if options.max_chars is not None and chars + entry.chars > options.max_chars:
                break
            chars += entry.chars
            picked.append(entry)
        picked.reverse()
        return picked
