"""The room's archive, read (XEP-0313, ``urn:xmpp:mam:2``): queries, paging, metadata.

A room archives when it is persistent and logs (``muc#roomconfig_enablelogging``): its
groupchat messages are the store's ``messages`` rows (``write.py`` writes them, with the
``<stanza-id/>`` of XEP-0359 that ``messages.py`` gave each), so the archive costs the rooms
nothing but that write. A temporary room archives nothing: what it said
goes with it.

Who may read it: its occupants at once; anyone else only if the gate lets them (one check per
query, action ``mam``, the same GET a join sends), and never an outcast, nor a non-member of a
members-only room. A query waits for the store only, never for the rooms: its answer comes when
the page is read, each message as a ``<forwarded/>`` copy with its time, then the ``<fin/>``.

Wokkel 18 has no XEP-0059 (result set management) support: the few ``<set/>`` elements of a
query and its answer are read and written here by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.muc import NS_MUC_USER

from mucauth.authorize.base import JoinRequest
from mucauth.muc import errors
from mucauth.muc.archive.write import (
    NS_MAM,
    NS_MAM_EXTENDED,
    NS_STANZA_ID,
    UnreadableError,
    archives,
    readable_message,
    stamp,
)
from mucauth.muc.core import Context, Core
from mucauth.muc.feature import ANSWERED, Answer, Feature, IqRequest, Route
from mucauth.muc.incoming import child_ns
from mucauth.muc.jids import occupant_address
from mucauth.muc.join import JoinGate, Pending
from mucauth.muc.owner import read_bool
from mucauth.muc.room import Room
from mucauth.muc.rsm import NS_RSM, page_request
from mucauth.muc.stanzas import NS_OCCUPANT_ID
from mucauth.muc.xml import Stanza
from mucauth.store.base import (
    ArchivePage,
    ArchiveQuery,
    HistoryRecord,
    StoreError,
    UnknownStanzaIdError,
)

__all__ = [
    "NS_MAM",
    "NS_MAM_EXTENDED",
    "NS_RSM",
    "NS_STANZA_ID",
    "Archive",
    "archives",
    "parse_query",
    "stamp",
    "stanza_id_element",
]

NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"

# The query form's fields (XEP-0313 §5.1 and the #extended ones), by type.
_TEXT_FIELDS = ("start", "end", "before-id", "after-id")
_FORM_FIELDS = (
    ("jid-single", "with"),
    ("text-single", "start"),
    ("text-single", "end"),
    ("text-single", "before-id"),
    ("text-single", "after-id"),
    ("text-multi", "ids"),
)

# Called with a query's answer to send it (iq.py's result or error).
Reply = Callable[[Deferred[Any], domish.Element, Context], None]


def stanza_id_element(room: Room, archive_id: str) -> domish.Element:
    """XEP-0359: the id the room gave a message, by the room."""
    element = domish.Element((NS_STANZA_ID, "stanza-id"))
    element["by"] = room.jid.userhost()
    element["id"] = archive_id
    return element


def _time(name: str, value: str) -> float:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise errors.BadRequest(f"{name} is not an XEP-0082 date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_query(
    payload: domish.Element, room: Room, *, sees_real_jids: bool, max_page: int
) -> tuple[ArchiveQuery, bool]:
    """A ``<query/>`` as an :class:`ArchiveQuery`, and whether ``<flip-page/>`` was asked.

    ``with`` is an occupant JID of the room (that nick's messages) or a bare user JID (that
    user's messages, only for whoever may see real JIDs in the room). Raises ``BadRequest``
    for what cannot be read, ``NotSupported`` for what is not offered.
    """
    values: dict[str, str] = {}
    ids: tuple[str, ...] = ()
    nick: str | None = None
    sender: str | None = None
    form_element = child_ns(payload, data_form.NS_X_DATA, "x")
    if form_element is not None:
        form = data_form.Form.fromElement(form_element)
        if form.formNamespace not in (None, NS_MAM):
            raise errors.BadRequest(f"Not a {NS_MAM} form")
        for var, field in form.fields.items():
            if var == "FORM_TYPE":
                continue
            texts = [str(v) for v in field.values if v is not None and str(v) != ""]
            if var == "ids":
                ids = tuple(texts)
            elif var == "with":
                if texts:
                    nick, sender = _with(texts[0], room, sees_real_jids)
            elif var in _TEXT_FIELDS:
                if texts:
                    values[var] = texts[0]
            else:
                raise errors.NotSupported(f"Unknown field {var!r} in the archive query")
    start = _time("start", values["start"]) if "start" in values else None
    end = _time("end", values["end"]) if "end" in values else None
    limit, page_after, page_before, last = _rsm(child_ns(payload, NS_RSM, "set"), max_page)
    query = ArchiveQuery(
        start=start,
        end=end,
        nick=nick,
        sender=sender,
        after_id=values.get("after-id"),
        before_id=values.get("before-id"),
        ids=ids,
        page_after=page_after,
        page_before=page_before,
        last=last,
        limit=limit,
    )
    return query, child_ns(payload, NS_MAM, "flip-page") is not None


def _with(text: str, room: Room, sees_real_jids: bool) -> tuple[str | None, str | None]:
    try:
        jid = JID(text.strip())
    except InvalidFormat:
        raise errors.BadRequest("with is not a JID") from None
    if jid.userhostJID() == room.jid:
        if jid.resource is None:
            raise errors.BadRequest("with names the room itself: give an occupant or a user")
        return jid.resource, None
    if not sees_real_jids:
        raise errors.Forbidden("Real JIDs are not visible in this room: filter by occupant")
    return None, jid.userhost()


def _rsm(element: domish.Element | None, max_page: int) -> tuple[int, str | None, str | None, bool]:
    """XEP-0059 paging as the archive takes it (rsm.py reads the ``<set/>``): (limit, after,
    before, last page). ``<before/>`` empty is the last page; ``<index/>`` (jumping to a
    position) is not offered."""
    page = page_request(element, max_page)
    if page.index is not None:
        raise errors.NotSupported("Paging by index is not supported: use after or before")
    if page.after is not None and page.before is not None:
        raise errors.BadRequest("Page with after or with before, not both")
    return page.limit, page.after, page.before or None, page.before == ""


def query_form() -> domish.Element:
    """What a ``get`` of the query answers: the fields this archive filters by."""
    form = data_form.Form("form", formNamespace=NS_MAM)
    for kind, var in _FORM_FIELDS:
        form.addField(data_form.Field(kind, var=var))
    query = domish.Element((NS_MAM, "query"))
    query.addChild(form.toElement())
    return query


def _set(page: ArchivePage) -> domish.Element:
    rsm = domish.Element((NS_RSM, "set"))
    if page.messages:
        rsm.addElement("first", content=page.messages[0].stanza_id)
        rsm.addElement("last", content=page.messages[-1].stanza_id)
    return rsm


def forwarded(
    room: Room, record: HistoryRecord, to: JID, query_id: str | None, *, real_jid: bool
) -> domish.Element:
    """One result: the archived message as the room sent it, in ``<forwarded/>`` with its time.

    Messages the room itself sent (a retraction's notice) have no nick and come from the room.
    A stored row that cannot be read back raises :class:`~mucauth.muc.persist.UnreadableError`.
    """
    stored = readable_message(record)
    message = Stanza((None, "message"))
    message["from"] = room.jid.full()
    message["to"] = to.full()
    result = message.addElement((NS_MAM, "result"))
    if query_id:
        result["queryid"] = query_id
    result["id"] = record.stanza_id
    forward = result.addElement((NS_FORWARD, "forwarded"))
    forward.addElement((NS_DELAY, "delay"))["stamp"] = stamp(record.timestamp)
    inner = forward.addElement(("jabber:client", "message"))
    inner["from"] = occupant_address(room.jid, record.nick) if record.nick else room.jid.full()
    inner["type"] = "groupchat"
    if stored.stanza_id:
        inner["id"] = stored.stanza_id
    for each in stored.children:
        inner.addChild(each)
    if real_jid and record.nick:
        item = inner.addElement((NS_MUC_USER, "x")).addElement("item")
        item["jid"] = record.sender
    if record.occupant_id:
        inner.addElement((NS_OCCUPANT_ID, "occupant-id"))["id"] = record.occupant_id
    return message


def metadata(bounds: tuple[HistoryRecord, HistoryRecord] | None) -> domish.Element:
    """XEP-0313 §6.3: the archive's first and last message, empty when it holds none."""
    element = domish.Element((NS_MAM, "metadata"))
    if bounds is not None:
        for name, record in zip(("start", "end"), bounds, strict=True):
            edge = element.addElement(name)
            edge["id"] = record.stanza_id
            edge["timestamp"] = stamp(record.timestamp)
    return element


class Archive(Feature):
    """MAM iqs to a room: who may ask, the query read from the store, the answer; the
    room's archive in disco and its ``enablelogging`` field in the owner's form."""

    def __init__(self, core: Core, gate: JoinGate, reply: Reply) -> None:
        self._core = core
        self._gate = gate
        self._reply = reply
        # Queries being answered, by bare JID: one user's flood must not hold the store.
        self._running: dict[str, int] = {}

    def routes(self) -> Iterable[Route]:
        yield Route("room", "get", NS_MAM, self._on_iq)
        yield Route("room", "set", NS_MAM, self._on_iq)

    def room_features(self, room: Room) -> Iterable[str]:
        return (NS_MAM, NS_MAM_EXTENDED, NS_STANZA_ID) if archives(room) else ()

    def config_fields(self, room: Room) -> Iterable[data_form.Field]:
        yield data_form.Field(
            "boolean",
            var="muc#roomconfig_enablelogging",
            label="Archive messages",
            value=room.config.logging,
        )

    def read_config(self, values: Mapping[str, object]) -> Mapping[str, object]:
        if "enablelogging" not in values:
            return {}
        return {"logging": read_bool("enablelogging", values["enablelogging"])}

    def _on_iq(self, request: IqRequest) -> Answer:
        self.on_iq(
            request.stanza,
            request.kind,
            request.payload,
            request.context,
            request.existing_room,
        )
        return ANSWERED

    def on_iq(
        self, iq: domish.Element, kind: str, payload: domish.Element, context: Context, room: Room
    ) -> None:
        """Handle a MAM iq; its answer is sent later (``reply``)."""
        if not archives(room):
            raise errors.NotOffered("This room keeps no archive")
        if payload.name == "query" and kind == "get":
            self._permitted(iq, context, room, lambda current: succeed(query_form()))
        elif payload.name == "query" and kind == "set":
            self._permitted(iq, context, room, lambda current: self._query(current, iq, context))
        elif payload.name == "metadata" and kind == "get":
            self._permitted(iq, context, room, self._metadata)
        else:
            raise errors.BadRequest("Unknown archive request")

    # -- who may read

    def _permitted(
        self,
        iq: domish.Element,
        context: Context,
        room: Room,
        run: Callable[[Room], Deferred[domish.Element | None]],
    ) -> None:
        """Run ``run`` for an occupant now, for anyone else once the gate allows them."""
        user = context.sender
        if room.occupant_for(user) is not None:
            self._reply(self._bounded(user, run, room), iq, context)
            return
        affiliation = room.affiliation(user)
        if affiliation == "outcast":
            raise errors.Forbidden("You are banned from this room")
        if room.config.members_only and affiliation == "none":
            raise errors.Forbidden("This room's archive is for its members")
        if self._gate.get(user, room.jid, "mam") is not None:
            raise errors.AlreadyPending("An archive query to this room is already being authorized")
        request = JoinRequest(user, room.jid, "", action="mam")

        def on_allow(pending: Pending) -> None:
            current = self._core.rooms.get(room.jid)
            if current is None or not archives(current):
                raise errors.RoomNotFound("No such room")
            self._reply(self._bounded(user, run, current), iq, context)

        self._gate.start(request, iq, context, on_allow)

    def _bounded(
        self, user: JID, run: Callable[[Room], Deferred[domish.Element | None]], room: Room
    ) -> Deferred[domish.Element | None]:
        """``run(room)``, unless ``user`` has ``[limits] max_archive_queries_per_user`` being
        answered already: then refused, so one user's flood of queries neither queues in
        the store ahead of everyone else's reads nor holds memory for its answers."""
        bare = user.userhost()
        running = self._running.get(bare, 0)
        if running >= self._core.settings.limits.max_archive_queries_per_user:
            raise errors.Overloaded(
                "Too many of your archive queries are being answered, try again later"
            )
        self._running[bare] = running + 1

        def done(result: Any) -> Any:
            left = self._running.get(bare, 1) - 1
            if left > 0:
                self._running[bare] = left
            else:
                self._running.pop(bare, None)
            return result

        try:
            d = run(room)
        except BaseException:
            done(None)
            raise
        return d.addBoth(done)

    # -- reading

    def _query(
        self, room: Room, iq: domish.Element, context: Context
    ) -> Deferred[domish.Element | None]:
        core = self._core
        payload = iq.firstChildElement()
        user = context.sender
        occupant = room.occupant_for(user)
        sees = room.config.non_anonymous or (occupant is not None and occupant.is_moderator)
        query, flip = parse_query(
            payload, room, sees_real_jids=sees, max_page=core.settings.archive.max_page
        )
        query_id = payload.getAttribute("queryid")
        d = core.rooms.store.query_archive(room.jid.userhost(), query)
        d.addTimeout(core.settings.load_timeout, core.clock)

        def answer(page: ArchivePage) -> domish.Element:
            current = core.rooms.get(room.jid, room)
            records = reversed(page.messages) if flip else page.messages
            for record in records:
                try:
                    result = forwarded(current, record, user, query_id, real_jid=sees)
                except UnreadableError as e:  # left out; the page's bounds still page past it
                    core.rooms.keeper.unreadable(
                        room.jid.full(), "message", record.stanza_id, str(e)
                    )
                    continue
                core.send(result)
            fin = domish.Element((NS_MAM, "fin"))
            if page.complete:
                fin["complete"] = "true"
            fin.addChild(_set(page))
            core.log.debug(
                "archive query room={room} user={user} messages={count} complete={complete}",
                room=room.jid.full(),
                user=user.full(),
                count=len(page.messages),
                complete=page.complete,
            )
            return fin

        return d.addCallbacks(answer, self._read_failed, errbackArgs=(room,))

    def _metadata(self, room: Room) -> Deferred[domish.Element | None]:
        core = self._core
        d = core.rooms.store.archive_bounds(room.jid.userhost())
        d.addTimeout(core.settings.load_timeout, core.clock)
        return d.addCallbacks(metadata, self._read_failed, errbackArgs=(room,))

    def _read_failed(self, failure: Failure, room: Room) -> Failure:
        """What a client is told when the store could not answer: the id it named is not
        there (item-not-found), or the store is unavailable (wait and retry)."""
        error = failure.value
        if isinstance(error, UnknownStanzaIdError):
            return Failure(errors.NoSuchMessage(f"No message {error.stanza_id} in this archive"))
        if isinstance(error, errors.MUCError):
            return failure
        if not isinstance(error, StoreError):
            why = failure.getErrorMessage() or failure.type.__name__
        else:
            why = str(error)
        self._core.log.error(
            "room store: reading the archive of {room} failed ({why})",
            room=room.jid.full(),
            why=why,
        )
        return Failure(errors.StoreUnavailable("The archive cannot be read now, try again later"))
