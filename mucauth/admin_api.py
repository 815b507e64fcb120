"""The admin HTTP API: the web application's way to act after the join ([admin_api]).

    POST /v1/revoke   {"userJID", "mucJID"?, "reason"?}   -> {"removed": N}
    POST /v1/recheck  {"mucJID"?} or {"userJID"?} or {}    -> {"checked": N, "removed": M, ...}
    GET  /v1/rooms                                          -> {"rooms": [...]}
    GET  /v1/rooms/<room>                                   -> {"jid", "occupants": [...]}

Every request needs ``Authorization: Bearer <token>``; a wrong or missing one is 401 (compared
in constant time, never logged, nor the header). JSON in and out, errors as ``{"error": ...}``
with the fitting status, request bodies cut off at :data:`MAX_BODY` (413). Each process serves
its own rooms: with several behind ejabberd's balancing, ask each (README.rst, "Admin API").

Built on ``twisted.web``; it knows the MUC service only through its public methods.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from mucauth.listen import SiteServer
from mucauth.muc.revocation import RecheckResult
from mucauth.muc.service import MUCService
from mucauth.settings import AdminAPISettings, Secret
from mucauth.text import clean_text

__all__ = ["MAX_BODY", "AdminAPIServer", "admin_site"]

MAX_BODY = 64 * 1024  # bytes of a request body; the API's bodies are a few hundred
MAX_TEXT = 1024  # characters of a reason


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
        if endpoint == "rooms" and len(parts) <= 3:
            if method != "GET":
                raise _ApiError(405, "use GET")
            return self._rooms() if len(parts) == 2 else self._room(parts[2])
        if endpoint in ("revoke", "recheck") and len(parts) == 2:
            if method != "POST":
                raise _ApiError(405, "use POST")
            body = self._body(request)
            return self._revoke(body) if endpoint == "revoke" else self._recheck(body)
        raise _ApiError(404, "no such endpoint")

    # -- reading requests

    def _body(self, request: Request) -> dict[str, Any]:
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
        known = {"userJID", "mucJID", "reason"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise _ApiError(400, f"unknown member {unknown[0]!r} (known: mucJID, reason, userJID)")
        return body

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

    def _rooms(self) -> dict[str, Any]:
        rooms = sorted(self._muc.rooms.values(), key=lambda r: r.jid.full())
        return {"rooms": [_room_json(room) for room in rooms]}

    def _room(self, name: str) -> dict[str, Any]:
        jid = self._jid({"mucJID": name}, "mucJID", room=True)
        assert jid is not None
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
