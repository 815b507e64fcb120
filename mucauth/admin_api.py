"""The admin HTTP API: the web application's way to act after the join ([admin_api]).

    POST /v1/revoke   {"userJID", "mucJID"?, "reason"?}   -> {"removed": N}
    POST /v1/recheck  {"mucJID"?} or {"userJID"?} or {}    -> {"checked": N, "removed": M, ...}
    GET  /v1/rooms?limit=&after=                            -> {"rooms": [...], "next"}
    GET  /v1/rooms/<room>                                   -> {"jid", "occupants": [...]}
    DELETE /v1/rooms/<room>   {"reason"?}                   -> {"live": bool, "stored": bool}
    GET  /v1/rooms/<room>/messages?limit=&after=            -> {"messages": [...], "next"}
    DELETE /v1/rooms/<room>/messages  {"ids": [...]} or {"all": true}  -> {"deleted": N}
    GET  /v1/service                                        -> {"state": "up"|"down", ...}

The room list merges the live rooms and the stored ones, a page at a time in JID order
(``next`` is the cursor for ``after``, null on the last page), so 10,000 rooms cost no more
per call than 100. Deleting a room destroys it as its owner would (occupants are told), live or
stored, loadable or not; the message list shows each stored message's id, time, nick, size and
whether it can be read back (its XML only then), so an unreadable row can be found and deleted
without SQL.

Every request needs ``Authorization: Bearer <token>``; a wrong or missing one is 401 (compared
in constant time, never logged, nor the header). JSON in and out, errors as ``{"error": ...}``
with the fitting status, request bodies cut off at :data:`MAX_BODY` (413). Each process serves
its own rooms: with several behind ejabberd's balancing, ask each (docs/reference/admin-api.rst).

Built on ``twisted.web``; it knows the MUC service only through its public methods.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from mucauth.listen import SiteServer
from mucauth.muc.repair import ArchivedMessage, RoomListing
from mucauth.muc.revocation import RecheckResult
from mucauth.muc.service import MUCService
from mucauth.settings import AdminAPISettings, Secret
from mucauth.store.base import StoreError, UnknownStanzaIdError
from mucauth.text import clean_text

__all__ = ["MAX_BODY", "AdminAPIServer", "admin_site"]

_KNOWN = ("userJID", "mucJID", "reason")  # the members revoke and recheck bodies may have

MAX_BODY = 64 * 1024  # bytes of a request body; the API's bodies are a few hundred
MAX_TEXT = 1024  # characters of a reason
PAGE = 100  # rooms or messages per page by default
MAX_PAGE = 1000  # at most, whatever ``limit`` asks
MAX_IDS = 1000  # stanza ids one delete may name


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _BoundedRequest(Request):
    """Keeps at most MAX_BODY bytes of a body, so an oversized one costs no memory."""

    too_large = False

    def gotLength(self, length: int | None) -> None:
        self.too_large = length is not None and length > MAX_BODY
        super().gotLength(None if self.too_large else length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large or self.content is None:
            return
        if self.content.tell() + len(data) > MAX_BODY:
            self.too_large = True
            return
        super().handleContentChunk(data)


class _Api(Resource):
    isLeaf = True
    log = Logger(namespace="mucauth.admin_api")

    def __init__(self, muc: MUCService, token: Secret, domain: str) -> None:
        super().__init__()
        self._muc = muc
        self._token = ("Bearer " + token.reveal()).encode("utf-8")
        self._domain = domain

    def render(self, request: Request) -> bytes | int:
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        try:
            if not self._authorized(request):
                request.setHeader(b"www-authenticate", b'Bearer realm="mucauth"')
                raise _ApiError(401, "unauthorized")
            answer = self._route(method, path, request)
        except _ApiError as e:
            return self._finish(request, method, path, e.status, {"error": e.message})
        except Exception:
            self.log.failure("admin api {method} {path} failed", method=method, path=path)
            return self._finish(request, method, path, 500, {"error": "internal error"})
        if isinstance(answer, Deferred):
            answer.addCallbacks(
                lambda body: self._finish(request, method, path, 200, body, later=True),
                self._failed_later,
                errbackArgs=(request, method, path),
            )
            return NOT_DONE_YET
        return self._finish(request, method, path, 200, answer)

    def _authorized(self, request: Request) -> bool:
        given = request.getHeader(b"authorization") or b""
        return hmac.compare_digest(given, self._token)

    def _route(self, method: str, path: str, request: Request) -> Any:
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v1"] or len(parts) < 2:
            raise _ApiError(404, "no such endpoint")
        endpoint = parts[1]
        if endpoint == "rooms" and len(parts) == 2:
            if method != "GET":
                raise _ApiError(405, "use GET")
            return self._rooms(request)
        if endpoint == "rooms" and len(parts) == 3:
            if method == "GET":
                return self._room(parts[2])
            if method == "DELETE":
                return self._delete_room(parts[2], self._body(request, {"reason"}))
            raise _ApiError(405, "use GET or DELETE")
        if endpoint == "rooms" and len(parts) == 4 and parts[3] == "messages":
            if method == "GET":
                return self._messages(parts[2], request)
            if method == "DELETE":
                return self._delete_messages(parts[2], self._body(request, {"ids", "all"}))
            raise _ApiError(405, "use GET or DELETE")
        if endpoint == "service" and len(parts) == 2:
            if method != "GET":
                raise _ApiError(405, "use GET")
            return self._service()
        if endpoint in ("revoke", "recheck") and len(parts) == 2:
            if method != "POST":
                raise _ApiError(405, "use POST")
            body = self._body(request)
            return self._revoke(body) if endpoint == "revoke" else self._recheck(body)
        raise _ApiError(404, "no such endpoint")

    # -- reading requests

    def _body(
        self, request: Request, known: frozenset[str] | set[str] = frozenset(_KNOWN)
    ) -> dict[str, Any]:
        if getattr(request, "too_large", False):
            raise _ApiError(413, f"the body is over {MAX_BODY} bytes")
        content = request.content
        if content is None:
            return {}
        content.seek(0)
        raw = content.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "the body is not a JSON object")
        unknown = sorted(set(body) - set(known))
        if unknown:
            names = ", ".join(sorted(known))
            raise _ApiError(400, f"unknown member {unknown[0]!r} (known: {names})")
        return body

    def _page(self, request: Request) -> tuple[int, str | None]:
        """``limit`` (1 to MAX_PAGE, PAGE by default) and ``after`` from the query string."""
        args: dict[bytes, list[bytes]] = request.args or {}
        unknown = sorted(
            k.decode("utf-8", "replace") for k in args if k not in (b"limit", b"after")
        )
        if unknown:
            raise _ApiError(400, f"unknown parameter {unknown[0]!r} (known: after, limit)")
        limit = PAGE
        if b"limit" in args:
            try:
                limit = int(args[b"limit"][0])
            except ValueError:
                raise _ApiError(400, "limit must be a number") from None
            if not 1 <= limit <= MAX_PAGE:
                raise _ApiError(400, f"limit must be 1 to {MAX_PAGE}")
        after = None
        if b"after" in args:
            try:
                after = args[b"after"][0].decode("utf-8") or None
            except UnicodeDecodeError:
                raise _ApiError(400, "after is not UTF-8") from None
        return limit, after

    def _room_jid(self, name: str) -> str:
        jid = self._jid({"mucJID": name}, "mucJID", room=True)
        assert jid is not None
        return jid

    def _jid(self, body: dict[str, Any], name: str, *, room: bool) -> str | None:
        value = body.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise _ApiError(400, f"{name} must be a JID string")
        if room and "@" not in value:
            value = f"{value}@{self._domain}"
        try:
            jid = JID(value)
        except InvalidFormat:
            raise _ApiError(400, f"{name} is not a valid JID") from None
        if jid.resource is not None or jid.user is None:
            raise _ApiError(400, f"{name} must be a bare JID (user@domain)")
        return jid.userhost()

    # -- endpoints

    def _revoke(self, body: dict[str, Any]) -> dict[str, Any]:
        user = self._jid(body, "userJID", room=False)
        if user is None:
            raise _ApiError(400, "userJID is required")
        room = self._jid(body, "mucJID", room=True)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _ApiError(400, "reason must be a string")
        if reason is not None:
            reason = clean_text(reason, MAX_TEXT) or None
        return {"removed": self._muc.revoke(user, room, reason)}

    def _recheck(self, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        if "reason" in body:
            raise _ApiError(400, "a re-check takes no reason: the service's answer gives it")
        user = self._jid(body, "userJID", room=False)
        room = self._jid(body, "mucJID", room=True)

        def answer(result: RecheckResult) -> dict[str, Any]:
            return {
                "checked": result.checked,
                "removed": result.removed,
                "kept_on_error": result.kept_on_error,
            }

        return self._muc.recheck(room, user).addCallback(answer)

    def _rooms(self, request: Request) -> Deferred[dict[str, Any]]:
        limit, after = self._page(request)

        def answer(result: tuple[list[RoomListing], bool]) -> dict[str, Any]:
            listings, more = result
            rooms = []
            for listing in listings:
                room = self._muc.rooms.get(JID(listing.jid)) if listing.live else None
                shown = (
                    _room_json(room)
                    if room is not None
                    else {
                        "jid": listing.jid,
                        "persistent": listing.persistent,
                        "occupants": [],
                    }
                )
                shown.update(name=listing.name, live=listing.live, stored=listing.stored)
                rooms.append(shown)
            return {"rooms": rooms, "next": listings[-1].jid if more and listings else None}

        return self._muc.list_rooms(after, limit).addCallback(answer)

    def _delete_room(self, name: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        jid = self._room_jid(name)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _ApiError(400, "reason must be a string")
        if reason is not None:
            reason = clean_text(reason, MAX_TEXT) or None

        def answer(result: tuple[bool, bool]) -> dict[str, Any]:
            live, stored = result
            if not live and not stored:
                raise _ApiError(404, "no such room (in this process or its store)")
            return {"live": live, "stored": stored}

        return self._muc.destroy_room(jid, reason).addCallback(answer)

    def _messages(self, name: str, request: Request) -> Deferred[dict[str, Any]]:
        jid = self._room_jid(name)
        limit, after = self._page(request)

        def answer(result: tuple[list[ArchivedMessage], bool]) -> dict[str, Any]:
            found, more = result
            messages = [
                {
                    "id": m.stanza_id,
                    "time": m.timestamp if math.isfinite(m.timestamp) else None,
                    "nick": m.nick,
                    "size": m.size,
                    "readable": m.readable,
                    **({"xml": m.xml} if m.readable else {}),
                }
                for m in found
            ]
            return {"messages": messages, "next": found[-1].stanza_id if more and found else None}

        def unknown(failure: Failure) -> Failure:
            if failure.check(UnknownStanzaIdError):
                raise _ApiError(400, "after names no message of this room")
            return failure

        d = self._muc.archived_messages(jid, after, limit)
        return d.addCallbacks(answer, unknown)

    def _delete_messages(self, name: str, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        jid = self._room_jid(name)
        ids, every = body.get("ids"), body.get("all")
        if every is not None and every is not True:
            raise _ApiError(400, "all must be true, or left out")
        if (ids is None) == (every is None):
            raise _ApiError(400, 'give "ids" (a list of stanza ids) or "all": true')
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
                raise _ApiError(400, "ids must be a list of stanza ids")
            if len(ids) > MAX_IDS:
                raise _ApiError(400, f"at most {MAX_IDS} ids at once")
        d = self._muc.delete_archived(jid, None if every else ids)
        return d.addCallback(lambda deleted: {"deleted": deleted})

    def _service(self) -> dict[str, Any]:
        """The authorization service as the gate sees it: up, or considered down (and since
        when), and the checks waiting. An embedder's own authorizer has no breaker: "up"."""
        muc = self._muc
        breaker = getattr(muc.authorizer, "breaker", None)
        answer: dict[str, Any] = {"state": "up"}
        if breaker is not None:
            answer = breaker.describe()
        answer["checks_pending"] = muc.pending_checks
        answer["checks_queued"] = muc.queued_checks
        return answer

    def _room(self, name: str) -> dict[str, Any]:
        jid = self._room_jid(name)
        room = self._muc.rooms.get(JID(jid))
        if room is None:
            raise _ApiError(404, "no such room (in this process)")
        return _room_json(room)

    # -- answering

    def _finish(
        self,
        request: Request,
        method: str,
        path: str,
        status: int,
        body: dict[str, Any],
        *,
        later: bool = False,
    ) -> bytes:
        request.setResponseCode(status)
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        emit = self.log.info if status < 500 else self.log.error
        emit(
            "admin api {method} {path} -> {status}",
            method=method,
            path=path,
            status=status,
            mucauth_event="admin_api",
        )
        if later:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(data)
                request.finish()
        return data

    def _failed_later(self, failure: Failure, request: Request, method: str, path: str) -> None:
        error = failure.value
        if isinstance(error, _ApiError):
            self._finish(request, method, path, error.status, {"error": error.message}, later=True)
            return
        if isinstance(error, StoreError):  # one line for the operator, no traceback
            self.log.error("admin api {method} {path}: {why}", method=method, path=path, why=error)
            body = {"error": "the room store cannot be used now, try again later"}
            self._finish(request, method, path, 503, body, later=True)
            return
        self.log.failure("admin api {method} {path} failed", failure, method=method, path=path)
        self._finish(request, method, path, 500, {"error": "internal error"}, later=True)


def _room_json(room: Any) -> dict[str, Any]:
    return {
        "jid": room.jid.full(),
        "persistent": room.config.persistent,
        "occupants": [
            {
                "userJID": occupant.bare,
                "nick": occupant.nick,
                "role": occupant.role,
                "affiliation": occupant.affiliation,
                "sessions": len(occupant.sessions),
            }
            for occupant in sorted(room, key=lambda o: o.nick)
        ],
    }


class _QuietSite(Site):
    """One log line per request is ours (without headers); twisted.web's own is off."""

    noisy = False
    requestFactory = _BoundedRequest

    def log(self, request: http.Request) -> None:
        pass


def admin_site(muc: MUCService, token: Secret, domain: str) -> Site:
    site = _QuietSite(_Api(muc, token, domain))
    site.displayTracebacks = False
    return site


class AdminAPIServer(SiteServer):
    """The admin API on ``[admin_api] interface:port``."""

    log = Logger()

    def __init__(
        self,
        muc: MUCService,
        settings: AdminAPISettings,
        domain: str,
        reactor: Any = None,
        *,
        exit_on_listen_error: bool = False,
    ) -> None:
        if settings.port is None or settings.token is None:
            raise ValueError("[admin_api] needs port and token")
        super().__init__(
            admin_site(muc, settings.token, domain),
            settings.port,
            settings.interface,
            "admin_api",
            reactor,
            exit_on_listen_error=exit_on_listen_error,
            path="/v1/",
        )
