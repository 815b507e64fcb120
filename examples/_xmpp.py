"""Real XMPP clients (slixmpp) that plain synchronous code can drive: the demo's scripted
session and the end-to-end tests (through ``tests/support/xmpp.py``).

slixmpp is asyncio; the demo and the tests are synchronous and also start and stop
subprocesses. Each ``XMPPClient`` therefore runs its own asyncio loop in a background thread;
every public method submits a coroutine to it and waits for the result with a timeout, so a
missing answer raises with a message instead of hanging. ``disconnect()`` stops the loop and
joins the thread: no client outlives its user (``live_client_threads()`` checks).

Everything the server sends (presences, messages) is kept in an inbox, so a test can wait for a
stanza that may already have arrived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
THREAD_PREFIX = "xmpp-client"

T = TypeVar("T")


class XMPPTestError(AssertionError):
    """The XMPP exchange did not happen as the test needs; the message says what was seen."""


@dataclass(frozen=True)
class ReceivedPresence:
    sender: str  # full JID: room@service/nick for a MUC presence
    type: str  # "available", "unavailable", "error"
    status_codes: frozenset[int]
    id: str
    xml: str
    condition: str | None = None  # for type="error"

    @property
    def nick(self) -> str:
        return JID(self.sender).resource


@dataclass(frozen=True)
class GroupchatMessage:
    room: str
    nick: str
    body: str
    id: str
    delayed: bool  # history replayed on join
    xml: str


@dataclass(frozen=True)
class JoinResult:
    """What came back for one join presence: a success or an error, never both."""

    room: str
    nick: str
    join_id: str  # the id of the join presence we sent
    ok: bool
    elapsed: float  # seconds from sending the join to the decisive answer
    status_codes: frozenset[int] = frozenset()  # of the 110 self-presence
    occupants: tuple[str, ...] = ()  # nicks of the others present, in arrival order
    subject: str | None = None
    history: tuple[str, ...] = ()
    presences: tuple[ReceivedPresence, ...] = ()  # everything the room sent meanwhile
    # On an error presence:
    error_type: str | None = None
    condition: str | None = None
    text: str | None = None
    error_id: str | None = None
    error_has_muc_x: bool = False
    error_by: str | None = None
    error_xml: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"joined {self.room} as {self.nick} (status {sorted(self.status_codes)})"
        return (
            f"join of {self.room} as {self.nick} refused: {self.error_type}/{self.condition}"
            f" text={self.text!r}\n{self.error_xml}"
        )


@dataclass(frozen=True)
class DiscoInfo:
    identities: tuple[tuple[str, str, str], ...] = ()  # (category, type, name)
    features: frozenset[str] = frozenset()
    condition: str | None = None  # an error answer
    xml: str = ""


@dataclass(frozen=True)
class ArchivePage:
    """One page of a room's archive (XEP-0313): the results in arrival order, and the answer."""

    ids: tuple[str, ...] = ()  # the archive ids of the results
    bodies: tuple[str | None, ...] = ()  # each forwarded message's body (None: a tombstone...)
    results: tuple[str, ...] = ()  # each result <message/> as XML
    complete: bool = False
    first: str | None = None
    last: str | None = None
    condition: str | None = None  # the error's, when the query was refused
    xml: str = ""  # the iq answer


_MAM = "{urn:xmpp:mam:2}"
_RSM = "{http://jabber.org/protocol/rsm}"


@dataclass
class _Inbox:
    """Stanzas in arrival order; a stanza handed to a waiter is consumed."""

    items: list[Presence | Message] = field(default_factory=list)
    consumed: set[int] = field(default_factory=set)
    waiters: list[tuple[Callable[[Any], bool], asyncio.Future[int]]] = field(default_factory=list)

    def add(self, stanza: Presence | Message) -> None:
        index = len(self.items)
        self.items.append(stanza)
        for predicate, future in list(self.waiters):
            if not future.done() and predicate(stanza):
                self.waiters.remove((predicate, future))
                self.consumed.add(index)
                future.set_result(index)
                return

    async def take(
        self, predicate: Callable[[Any], bool], timeout: float, since: int = 0
    ) -> Presence | Message:
        for index in range(since, len(self.items)):
            if index not in self.consumed and predicate(self.items[index]):
                self.consumed.add(index)
                return self.items[index]
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self.waiters.append(entry)
        try:
            index = await asyncio.wait_for(future, timeout)
        finally:
            if entry in self.waiters:
                self.waiters.remove(entry)
        return self.items[index]


def _status_codes(presence: Presence) -> frozenset[int]:
    codes = set()
    for x in presence.xml.findall(f"{{{NS_MUC_USER}}}x"):
        for status in x.findall(f"{{{NS_MUC_USER}}}status"):
            try:
                codes.add(int(status.get("code", "")))
            except ValueError:
                pass
    return frozenset(codes)


def _subject(message: Message) -> str | None:
    """The subject's text: "" for an empty <subject/>, None when there is no element."""
    element = message.xml.find("{jabber:client}subject")
    return None if element is None else element.text or ""


def _presence(stanza: Presence) -> ReceivedPresence:
    kind = stanza["type"] or "available"
    if kind in ("chat", "away", "xa", "dnd"):  # slixmpp reports <show/> as the type
        kind = "available"
    return ReceivedPresence(
        sender=str(stanza["from"]),
        type=kind,
        status_codes=_status_codes(stanza),
        id=stanza["id"],
        xml=str(stanza),
        condition=stanza["error"]["condition"] if kind == "error" else None,
    )


class XMPPClient:
    """One c2s session (plain TCP, PLAIN auth) on a test server, driven synchronously."""

    def __init__(
        self, jid: str, password: str, host: str, port: int, *, timeout: float = 10.0
    ) -> None:
        self.jid = jid
        self.password = password
        self.host = host
        self.port = port
        self.timeout = timeout
        self.xmpp: ClientXMPP | None = None
        self._inbox = _Inbox()
        self._nicks: dict[str, str] = {}  # room bare JID -> our nick
        self._sent_ids: dict[str, str] = {}  # occupant JID -> id of our last presence to it
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"{THREAD_PREFIX} {jid}", daemon=True
        )
        self._thread.start()

    # -- the loop thread ---------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the client's loop and wait for it, a little longer than its own
        timeouts so that they, with their better messages, fire first."""
        if not self._thread.is_alive():
            coro.close()
            raise XMPPTestError(f"{self.jid}: the client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result((timeout or self.timeout) + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            waited = timeout or self.timeout
            raise XMPPTestError(f"{self.jid}: no result within {waited} s") from None

    # -- session -----------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> XMPPClient:
        """Log in and send initial presence (so the server tracks our directed presences and
        tells the rooms when we go away). Raises with the reason when login fails."""
        try:
            self._call(self._connect(timeout or self.timeout), timeout)
        except BaseException:
            self.disconnect()  # a failed client must not leave its thread behind
            raise
        return self

    async def _connect(self, timeout: float) -> None:
        xmpp = ClientXMPP(
            self.jid,
            self.password,
            plugin_config={"feature_mechanisms": {"unencrypted_plain": True}},
        )
        # slixmpp 1.17 tries direct TLS first (and reports that failure as connection_failed);
        # test servers speak plain TCP.
        xmpp.enable_direct_tls = False
        for plugin in ("xep_0030", "xep_0045", "xep_0199"):
            xmpp.register_plugin(plugin)
        # The matchers pass the inbox only presences and messages.
        add = cast("Callable[[StanzaBase], None]", self._inbox.add)
        xmpp.register_handler(
            Callback("test inbox presence", MatchXPath("{jabber:client}presence"), add)
        )
        xmpp.register_handler(
            Callback("test inbox message", MatchXPath("{jabber:client}message"), add)
        )
        xmpp.add_filter("out", self._note_presence_id)
        self.xmpp = xmpp
        outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def settle(value: str | None) -> None:
            if not outcome.done():
                outcome.set_result(value)

        xmpp.add_event_handler("session_start", lambda _: settle(None))
        xmpp.add_event_handler("failed_all_auth", lambda _: settle("authentication failed"))
        xmpp.add_event_handler("connection_failed", lambda e: settle(f"connection failed: {e}"))
        xmpp.add_event_handler("disconnected", lambda e: settle(f"disconnected: {e}"))
        xmpp.connect(self.host, self.port)
        try:
            failure = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            failure = f"no session within {timeout} s"
        if failure is not None:
            xmpp.abort()  # slixmpp would otherwise retry forever
            raise XMPPTestError(
                f"{self.jid} could not log in to {self.host}:{self.port}: {failure}"
            )
        xmpp.send_presence()

    def _note_presence_id(self, stanza: Any) -> Any:
        """Remember the id slixmpp gave each outgoing presence, to check that errors echo it."""
        if isinstance(stanza, Presence) and stanza["to"]:
            if not stanza["id"]:
                stanza["id"] = self._require().new_id()
            self._sent_ids[str(stanza["to"])] = stanza["id"]
        return stanza

    def _require(self) -> ClientXMPP:
        if self.xmpp is None:
            raise XMPPTestError(f"{self.jid}: call connect() first")
        return self.xmpp

    @property
    def bound_jid(self) -> str:
        return str(self._require().boundjid)

    def disconnect(self) -> None:
        """Close the stream politely (the server then tells the rooms we left), stop the
        loop and join its thread. Safe to call twice."""
        if self._thread.is_alive():
            if self.xmpp is not None:
                try:
                    self._call(self._disconnect(), 5)
                except Exception:  # closing anyway
                    pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if self._thread.is_alive():
                raise XMPPTestError(f"{self.jid}: the client thread did not stop")

    async def _disconnect(self) -> None:
        xmpp = self._require()
        if xmpp.is_connected():
            await xmpp.disconnect(wait=1.0)
        xmpp.abort()  # no reconnect attempts after this

    close = disconnect

    @property
    def closed(self) -> bool:
        """True once the client's loop thread has stopped."""
        return not self._thread.is_alive()

    def __enter__(self) -> XMPPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- MUC ---------------------------------------------------------------------------------

    def join(self, room: str, nick: str, timeout: float | None = None) -> JoinResult:
        """Join with slixmpp's ``join_muc_wait`` (which needs the 110 self-presence and the
        subject) and, alongside, watch for an error presence from the room whether or not it
        carries the muc <x/> (``join_muc_wait`` sees only those that do)."""
        timeout = timeout or self.timeout
        return self._call(self._join(room, nick, timeout), timeout)

    async def _join(self, room: str, nick: str, timeout: float) -> JoinResult:
        xmpp = self._require()
        room_jid = JID(room)
        occupant = f"{room_jid.bare}/{nick}"
        since = len(self._inbox.items)
        started = time.monotonic()

        def is_error(stanza: Any) -> bool:
            return (
                isinstance(stanza, Presence)
                and stanza["type"] == "error"
                and stanza["from"].bare == room_jid.bare
            )

        join = asyncio.ensure_future(
            xmpp.plugin["xep_0045"].join_muc_wait(room_jid, nick, timeout=timeout)
        )
        error = asyncio.ensure_future(self._inbox.take(is_error, timeout, since))
        try:
            done, _ = await asyncio.wait(
                {join, error}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (join, error):
                if not task.done():
                    task.cancel()
        elapsed = time.monotonic() - started
        join_id = self._sent_ids.get(occupant, "")
        seen = tuple(
            _presence(s)
            for s in self._inbox.items[since:]
            if isinstance(s, Presence) and s["from"].bare == room_jid.bare
        )
        if join in done and join.exception() is None:
            self_presence, subject, occupants, history = join.result()
            self._nicks[room_jid.bare] = self_presence["from"].resource
            return JoinResult(
                room=room_jid.bare,
                nick=self_presence["from"].resource,
                join_id=join_id,
                ok=True,
                elapsed=elapsed,
                status_codes=_status_codes(self_presence),
                occupants=tuple(
                    p["from"].resource for p in occupants if p["from"] != self_presence["from"]
                ),
                subject=_subject(subject),
                history=tuple(m["body"] for m in history),
                presences=seen,
            )
        stanza: Presence | None = None
        if error in done and error.exception() is None:
            stanza = error.result()  # type: ignore[assignment]
        elif join in done and isinstance(join.exception(), PresenceError):
            stanza = join.exception().presence  # type: ignore[union-attr]
        if stanza is None:
            raise XMPPTestError(
                f"{self.jid}: no answer to the join of {occupant} within {timeout} s"
                + (f" ({join.exception()!r})" if join in done else "")
                + "; the room sent: "
                + ("\n".join(p.xml for p in seen) or "nothing")
            )
        err = stanza.xml.find("{jabber:client}error")
        return JoinResult(
            room=room_jid.bare,
            nick=nick,
            join_id=join_id,
            ok=False,
            elapsed=elapsed,
            presences=seen,
            error_type=stanza["error"]["type"] or None,
            condition=stanza["error"]["condition"] or None,
            text=stanza["error"]["text"] or None,
            error_id=stanza["id"] or None,
            error_has_muc_x=stanza.xml.find(f"{{{NS_MUC}}}x") is not None,
            error_by=None if err is None else err.get("by"),
            error_xml=str(stanza),
        )

    def leave(self, room: str, timeout: float | None = None) -> ReceivedPresence:
        """Send unavailable to our occupant JID and wait for the room's answer to it."""
        timeout = timeout or self.timeout
        return self._call(self._leave(room, timeout), timeout)

    async def _leave(self, room: str, timeout: float) -> ReceivedPresence:
        xmpp = self._require()
        bare = JID(room).bare
        nick = self._nicks.pop(bare, None)
        if nick is None:
            raise XMPPTestError(f"{self.jid} has not joined {bare}")
        since = len(self._inbox.items)
        xmpp.plugin["xep_0045"].leave_muc(JID(bare), nick)
        stanza = await self._take(
            lambda s: (
                isinstance(s, Presence)
                and str(s["from"]) == f"{bare}/{nick}"
                and s["type"] in ("unavailable", "error")
            ),
            timeout,
            since,
            f"the room's unavailable for {bare}/{nick}",
        )
        return _presence(stanza)  # type: ignore[arg-type]

    def send_groupchat(self, room: str, body: str) -> str:
        """Send a groupchat message; returns its id (the room should keep it)."""
        return self._call(self._send_groupchat(room, body))

    async def _send_groupchat(self, room: str, body: str) -> str:
        xmpp = self._require()
        message = xmpp.make_message(mto=JID(room).bare, mbody=body, mtype="groupchat")
        if not message["id"]:
            message["id"] = xmpp.new_id()
        message.send()
        return str(message["id"])

    def wait_message(
        self, room: str, timeout: float | None = None, *, include_history: bool = False
    ) -> GroupchatMessage:
        """The next groupchat message with a body from ``room`` (live ones only by default)."""
        timeout = timeout or self.timeout
        return self._call(self._wait_message(room, timeout, include_history), timeout)

    async def _wait_message(
        self, room: str, timeout: float, include_history: bool
    ) -> GroupchatMessage:
        bare = JID(room).bare

        def wanted(s: Any) -> bool:
            return (
                isinstance(s, Message)
                and s["type"] == "groupchat"
                and s["from"].bare == bare
                and bool(s["body"])
                and (include_history or s.xml.find("{urn:xmpp:delay}delay") is None)
            )

        stanza = await self._take(wanted, timeout, 0, f"a groupchat message from {bare}")
        return GroupchatMessage(
            room=bare,
            nick=stanza["from"].resource,
            body=stanza["body"],
            id=stanza["id"],
            delayed=stanza.xml.find("{urn:xmpp:delay}delay") is not None,
            xml=str(stanza),
        )

    def wait_presence(
        self,
        occupant: str,
        kind: str | None = None,
        timeout: float | None = None,
    ) -> ReceivedPresence:
        """The next presence from ``occupant`` (room@service/nick), of type ``kind`` if given
        ("available", "unavailable", "error")."""
        timeout = timeout or self.timeout

        def wanted(s: Any) -> bool:
            return (
                isinstance(s, Presence)
                and str(s["from"]) == occupant
                and (kind is None or _presence(s).type == kind)
            )

        async def wait() -> ReceivedPresence:
            what = f"a {kind or 'any'} presence from {occupant}"
            stanza = await self._take(wanted, timeout, 0, what)
            return _presence(stanza)  # type: ignore[arg-type]

        return self._call(wait(), timeout)

    def wait_stanza(
        self,
        sender: str,
        name: str = "message",
        kind: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """The next ``name`` stanza (message or presence) from ``sender`` (a bare JID: any of
        its resources), of type ``kind`` if given, as XML: for the stanzas the helpers above
        leave out (invitations, forms, errors to a message)."""
        timeout = timeout or self.timeout
        wanted_class = Message if name == "message" else Presence

        def wanted(s: Any) -> bool:
            return (
                isinstance(s, wanted_class)
                and s["from"].bare == JID(sender).bare
                and (kind is None or s["type"] == kind)
            )

        async def wait() -> str:
            stanza = await self._take(wanted, timeout, 0, f"a {name} from {sender}")
            return str(stanza)

        return self._call(wait(), timeout)

    async def _take(
        self, predicate: Callable[[Any], bool], timeout: float, since: int, what: str
    ) -> Presence | Message:
        try:
            return await self._inbox.take(predicate, timeout, since)
        except TimeoutError:
            recent = "\n".join(str(s) for s in self._inbox.items[-8:]) or "nothing"
            raise XMPPTestError(
                f"{self.jid}: no {what} within {timeout} s; last received:\n{recent}"
            ) from None

    def self_ping(self, occupant: str, timeout: float | None = None) -> str:
        """XEP-0410: ping our own occupant JID. "result", or the error condition."""
        timeout = timeout or self.timeout
        return self._call(self._self_ping(occupant, timeout), timeout)

    async def _self_ping(self, occupant: str, timeout: float) -> str:
        try:
            await self._require().plugin["xep_0199"].send_ping(JID(occupant), timeout=timeout)
        except IqError as e:
            return str(e.iq["error"]["condition"])
        except IqTimeout:
            return "timeout"
        return "result"

    def disco_info(self, jid: str, timeout: float | None = None) -> DiscoInfo:
        timeout = timeout or self.timeout
        return self._call(self._disco_info(jid, timeout), timeout)

    async def _disco_info(self, jid: str, timeout: float) -> DiscoInfo:
        try:
            iq = await self._require().plugin["xep_0030"].get_info(jid=JID(jid), timeout=timeout)
        except IqError as e:
            return DiscoInfo(condition=str(e.iq["error"]["condition"]), xml=str(e.iq))
        except IqTimeout:
            raise XMPPTestError(f"{self.jid}: no disco#info answer from {jid}") from None
        info = iq["disco_info"]
        return DiscoInfo(
            identities=tuple((c, t, n or "") for c, t, n, _lang in info["identities"]),
            features=frozenset(info["features"]),
            xml=str(iq),
        )

    # -- the room archive (XEP-0313) ----------------------------------------------------------

    def archive(
        self,
        room: str,
        *,
        max: int | None = None,  # RSM's name
        after: str | None = None,
        before: str | None = None,
        fields: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> ArchivePage:
        """One archive query to ``room``: RSM ``max``/``after``/``before`` (``before=""`` is the
        last page) and form ``fields``; waits for every result the answer announces."""
        timeout = timeout or self.timeout
        return self._call(self._archive(room, max, after, before, fields, timeout), timeout)

    async def _archive(
        self,
        room: str,
        limit: int | None,
        after: str | None,
        before: str | None,
        fields: dict[str, str] | None,
        timeout: float,
    ) -> ArchivePage:
        query_id = self._require().new_id()
        form = ""
        if fields:
            form = (
                "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                "<value>urn:xmpp:mam:2</value></field>"
                + "".join(
                    f"<field var='{var}'><value>{value}</value></field>"
                    for var, value in fields.items()
                )
                + "</x>"
            )
        rsm = ""
        if limit is not None:
            rsm += f"<max>{limit}</max>"
        if after is not None:
            rsm += f"<after>{after}</after>"
        if before is not None:
            rsm += f"<before>{before}</before>" if before else "<before/>"
        if rsm:
            rsm = f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>"
        reply = await self._iq(
            f"<iq type='set' to='{room}'><query xmlns='urn:xmpp:mam:2' queryid='{query_id}'>"
            f"{form}{rsm}</query></iq>",
            timeout,
        )
        answer = ET.fromstring(reply)
        fin = answer.find(f"{_MAM}fin")
        if fin is None:
            condition = "unknown"
            for error in answer:
                if error.tag.rsplit("}", 1)[-1] != "error":
                    continue
                for child in error:
                    if child.tag.startswith("{" + NS_STANZAS) and not child.tag.endswith("text"):
                        condition = child.tag.split("}")[1]
            return ArchivePage(condition=condition, xml=reply)
        first = fin.findtext(f"{_RSM}set/{_RSM}first")
        last = fin.findtext(f"{_RSM}set/{_RSM}last")
        # The results come before the answer on the stream; collect them up to the last one.
        stanzas: list[Any] = []
        while last is not None:
            stanza = await self._take(
                lambda s: _archive_result(s, query_id) is not None,
                timeout,
                0,
                f"archive results for query {query_id}",
            )
            stanzas.append(stanza)
            if _archive_result(stanza, query_id).get("id") == last:
                break
        ids, bodies = [], []
        for stanza in stanzas:
            result = _archive_result(stanza, query_id)
            ids.append(result.get("id"))
            body = result.find(
                "{urn:xmpp:forward:0}forwarded/{jabber:client}message/{jabber:client}body"
            )
            bodies.append(body.text if body is not None else None)
        return ArchivePage(
            ids=tuple(ids),
            bodies=tuple(bodies),
            results=tuple(str(s) for s in stanzas),
            complete=fin.get("complete") == "true",
            first=first,
            last=last,
            xml=reply,
        )

    # -- raw stanzas -------------------------------------------------------------------------

    def raw(self, xml: str) -> None:
        """Send XML as is (in the client namespace), for stanzas slixmpp would not build."""
        xmpp = self._require()
        self._loop.call_soon_threadsafe(xmpp.send_raw, xml)

    def iq(self, xml: str, timeout: float | None = None) -> str:
        """Send an <iq/> given as XML and return the reply (result or error) as XML."""
        timeout = timeout or self.timeout
        return self._call(self._iq(xml, timeout), timeout)

    async def _iq(self, xml: str, timeout: float) -> str:
        xmpp = self._require()
        element = ET.fromstring(xml)
        if element.tag == "iq":  # written without a namespace: the client's
            element = ET.fromstring(xml.replace("<iq", "<iq xmlns='jabber:client'", 1))
        iq = Iq(xmpp, xml=element)
        if not iq["id"]:
            iq["id"] = xmpp.new_id()
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as e:
            reply = e.iq
        except IqTimeout:
            raise XMPPTestError(f"{self.jid}: no reply to {xml}") from None
        return str(reply)


def _archive_result(stanza: Any, query_id: str) -> Any:
    """The ``<result/>`` of a MAM result message for ``query_id``, or None."""
    result = stanza.xml.find(f"{_MAM}result") if isinstance(stanza, Message) else None
    if result is None or result.get("queryid") != query_id:
        return None
    return result


def live_client_threads() -> list[str]:
    """Names of client loop threads still running (should be none after a test class)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
