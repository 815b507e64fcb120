"""HTTPAuthorizer: the mod_muc_http_auth contract over treq, strict and fail-closed.

Only a 2xx answer whose body is a JSON object with ``"allowed": true`` opens the door (and any
``affiliation`` or ``role`` it names must be one the contract knows). Every other answer, and
every failure to get one, becomes a Decision instead of an exception, so the MUC service always
has something to tell the joining user.
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from hyperlink import EncodedURL
from OpenSSL import SSL
from twisted.internet import error as net_error
from twisted.internet import ssl
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.client import BrowserLikePolicyForHTTPS, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

import mucauth
from mucauth.authorize.agent import OriginAgent
from mucauth.authorize.base import (
    MAX_REASON,
    Decision,
    ErrorKind,
    IJoinAuthorizer,
    JoinRequest,
)
from mucauth.authorize.client import CheckClient
from mucauth.authorize.client import NoCookies as _NoCookies
from mucauth.authorize.pool import CountingConnectionPool
from mucauth.effective import redact_url
from mucauth.log_setup import LevelLogger
from mucauth.settings import HTTPAuthSettings, Secret
from mucauth.tls import load_ca_certificates

__all__ = ["MAX_BODY", "HTTPAuthorizer", "interpret"]

MAX_BODY = 64 * 1024  # bytes; an authorization answer is a few dozen

log = Logger()


class BodyTooLargeError(Exception):
    """The answer grew past MAX_BODY; the connection was closed rather than drained."""


class _CappedBody(Protocol):
    """Reads a response body up to a cap, for a check; closes the connection when it must
    stop early (the cap, the deadline, the caller leaving) rather than drain it.

    A body read that cannot be stopped (treq.content()) lets a server that sends headers and
    then stalls hold the check and the socket forever.
    """

    def __init__(self, limit: int, check: _Check) -> None:
        self._limit = limit
        self._check = check
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False

    def stop(self, reason: Failure) -> None:
        if self._done:
            return
        self._done = True
        if self.transport is not None:
            self.transport.loseConnection()
        self._check._failed(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._size += len(data)
        if self._size > self._limit:
            self.stop(Failure(BodyTooLargeError(f"body larger than {self._limit} bytes")))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self._check.answered(b"".join(self._chunks))
        else:
            self._check._failed(reason)


@implementer(IPolicyForHTTPS)
class _InsecurePolicy:
    """TLS without certificate or host name checks: ``insecure = true``, for test setups."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.CertificateOptions(verify=False)


def _policy_for(settings: HTTPAuthSettings) -> IPolicyForHTTPS:
    """The TLS policy: verified by default, against a private CA bundle, or not at all."""
    if settings.insecure:
        return _InsecurePolicy()
    if settings.ca_file:
        # The config check ran this same loader, so a file it accepted loads here too.
        certs = load_ca_certificates(settings.ca_file)
        return BrowserLikePolicyForHTTPS(trustRoot=ssl.trustRootFromCertificates(certs))
    return BrowserLikePolicyForHTTPS()


class _URIForm(EncodedURL):
    """A check's URL, in URI form already: treq neither converts nor parses it.

    treq accepts a hyperlink URL, and turns whatever URL it gets into its URI form on every
    request (``to_uri()``: the host through the ``idna`` package, every part percent-encoded
    again; then ``to_text()``); given text, it parses it first (``from_text()``, which checks
    every part): ~70 µs a check here, two thirds of what treq adds to one (bench/PROFILE.md). The
    text of a check's URL is in URI form by construction (:func:`_uri_form` once for the
    configured URL, without userinfo; ``quote(safe='')`` for the parameters), so
    :meth:`of` makes a URL whose ``to_uri()`` is itself and whose ``to_text()`` is that text,
    and which parses it only if anything else is read (``host``, ``query``, ``==`` ...): treq
    reads nothing else unless given ``params`` or a cookie dict, which we never pass. A URL
    derived from one (``replace()`` ...) is built by hyperlink as usual and converts as any.
    """

    _text = ""

    @classmethod
    def of(cls, text: str) -> _URIForm:
        url: _URIForm = object.__new__(cls)
        url.__dict__.update(_text=text, _parsed=False)
        return url

    def to_uri(self) -> EncodedURL:
        return self if self._text else super().to_uri()

    def to_text(self, with_password: bool = False) -> str:
        return self._text or str(super().to_text(with_password))

    def __getattr__(self, name: str) -> Any:
        # Called only for what the instance lacks: the parts of a URL that of() made, read
        # for the first time. hyperlink's own instances (_parsed unset) raise as usual.
        state = self.__dict__
        if name.startswith("__") or state.get("_parsed", True):
            raise AttributeError(name)
        state.update(vars(EncodedURL.from_text(state["_text"])), _parsed=True)
        return object.__getattribute__(self, name)


def _uri_form(url: str) -> str:
    """The URL as a request line carries it: an IDN host IDNA-encoded, other non-ASCII and
    unsafe characters percent-encoded, an empty path as ``/`` (what treq does to a URL)."""
    uri = EncodedURL.from_text(url).to_uri()
    if not uri.path:
        # "https://auth.example.org" + "?userJID=..." must not send "GET ?userJID=...".
        uri = uri.replace(path=("",))
    return str(uri.to_text())


def _split_userinfo(url: str) -> tuple[str, Secret | None]:
    """Move ``user:password@`` out of the URL into a Basic Authorization value.

    The HTTP client rejects userinfo in a URL, and operators do write it there; an explicit
    authorization_header wins over it.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    basic = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return urlunsplit(parts._replace(netloc=netloc)), Secret(f"Basic {basic}")


# What quote(value, safe="") leaves as it is (RFC 3986's unreserved characters), and "@".
_PLAIN_OR_AT = re.compile(r"[A-Za-z0-9_.~@-]*").fullmatch


def _quote(value: str) -> str:
    """``quote(value, safe="")``.

    quote() encodes a value that has a character to escape one byte at a time in Python, and
    every JID has its "@": that one is replaced directly when it is the only such character.
    """
    if _PLAIN_OR_AT(value) is not None:
        return value.replace("@", "%40")
    return quote(value, safe="")


def _query_url(base: str, request: JoinRequest) -> str:
    """The contract's GET URL; parameters follow any query string the operator configured."""
    base, _, _fragment = base.partition("#")
    query = (
        f"userJID={_quote(request.user.userhost())}"
        f"&mucJID={_quote(request.room.userhost())}"
        f"&nickname={_quote(request.nick)}"
    )
    if request.action == "mam":
        # Our extension: an archive reader who is not in the room, with no nickname; a join
        # (and a registration) sends exactly the contract's three parameters.
        query += "&action=mam"
    if "?" not in base:
        return f"{base}?{query}"
    if base.endswith(("?", "&")):
        return base + query
    return f"{base}&{query}"


def _short(value: Any) -> str:
    """A JSON value as it appeared, cut short: for reasons that say what the service sent."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _reason_text(error: Any) -> str:
    """The deny reason: a string as is, absent/null as empty, anything else as its JSON text."""
    if error is None:
        text = ""
    elif isinstance(error, str):
        text = error
    else:
        text = json.dumps(error, ensure_ascii=False)
    return text[:MAX_REASON]


def interpret(status: int, body: bytes) -> Decision:
    """Map one HTTP answer to a Decision. Anything but an unambiguous yes or no is an error."""
    if 300 <= status < 400:
        return Decision.error("redirect", f"HTTP {status}: redirects are not followed")
    if not 200 <= status < 300:
        return Decision.error("status", f"HTTP {status}")
    if not body.strip():
        return Decision.error("bad_json", "empty body")
    try:
        answer = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return Decision.error("bad_json", "body is not UTF-8")
    except ValueError as e:
        return Decision.error("bad_json", f"body is not JSON: {e}")
    if not isinstance(answer, dict):
        return Decision.error("bad_answer", f"body is not a JSON object: {_short(answer)}")
    if "allowed" not in answer:
        return Decision.error("bad_answer", "no 'allowed' member")
    allowed = answer["allowed"]
    if allowed is True:
        return _standing(answer)
    if allowed is False:
        return Decision.deny(_reason_text(answer.get("error")))
    return Decision.error("bad_answer", f"'allowed' is {_short(allowed)}, not true or false")


# Issue 15, an extension of the contract: a yes may name the joiner's standing in the room.
_AFFILIATIONS = ("owner", "admin", "member", "none")
_ROLES = ("moderator", "participant", "visitor")


def _standing(answer: dict[str, Any]) -> Decision:
    """A yes, with the affiliation and role it names (absent or null: none named).

    Any other value makes the whole answer a bad one, fail closed: a service that says
    "Owner" or "outcast" is confused, and guessing could grant a standing nobody meant.
    """
    affiliation = answer.get("affiliation")
    role = answer.get("role")
    if affiliation is None and role is None:
        return Decision.allow()  # every answer of the original contract
    if affiliation is not None and affiliation not in _AFFILIATIONS:
        return _bad_member("affiliation", affiliation, _AFFILIATIONS)
    if role is not None and role not in _ROLES:
        return _bad_member("role", role, _ROLES)
    return Decision.allow(affiliation=affiliation, role=role)


def _bad_member(member: str, value: Any, values: tuple[str, ...]) -> Decision:
    return Decision.error(
        "bad_answer", f"'{member}' is {_short(value)}, not one of {', '.join(values)}"
    )


def _failure_kind(failure: Failure) -> tuple[ErrorKind, str]:
    """Classify what went wrong on the way to an answer (a timeout is known before this)."""
    if failure.check(BodyTooLargeError):
        return "too_large", str(failure.value)
    if _is_cancelled(failure):
        # The caller gave up (the user left). Nobody acts on this Decision; it only keeps the
        # "never errbacks" promise.
        return "cancelled", Decision.cancelled().reason
    if failure.check(net_error.ConnectError, net_error.DNSLookupError):
        # ConnectionRefusedError, TCPTimedOutError, ...; DNSLookupError is not a ConnectError.
        return "connection", f"{type(failure.value).__name__}: {failure.value}"
    # Agent wraps what happened on the connection in ResponseFailed / ResponseNeverReceived /
    # RequestTransmissionFailed, each holding a list of Failures in ``reasons``.
    reasons = getattr(failure.value, "reasons", None)
    if isinstance(reasons, list):
        for inner in reasons:
            if isinstance(inner, Failure) and _is_tls(inner):
                return "tls", f"TLS: {inner.value}"
        first = reasons[0] if reasons and isinstance(reasons[0], Failure) else None
        detail = type(first.value).__name__ if first is not None else "unknown"
        return "connection", f"{type(failure.value).__name__}: {detail}"
    if _is_tls(failure):
        return "tls", f"TLS: {failure.value}"
    if failure.check(net_error.ConnectionLost, net_error.ConnectionDone):
        return "connection", f"{type(failure.value).__name__}"
    return "internal", f"{type(failure.value).__name__}: {failure.value}"


def _is_cancelled(failure: Failure) -> bool:
    if failure.check(CancelledError):
        return True
    reasons = getattr(failure.value, "reasons", None)
    return isinstance(reasons, list) and any(
        isinstance(inner, Failure) and inner.check(CancelledError) for inner in reasons
    )


def _is_tls(failure: Failure) -> bool:
    if failure.check(SSL.Error):
        return True
    try:
        from service_identity import VerificationError
    except ImportError:  # pragma: no cover - service_identity comes with twisted[tls]
        return False
    return bool(failure.check(VerificationError))


@implementer(IJoinAuthorizer)
class HTTPAuthorizer:
    """Asks the operator's HTTP service, over a bounded pool of persistent connections.

    A ``register`` request (authorize_registration) sends exactly the same GET as a join: the
    contract has no field for the action, and a service that lets a user into a room should let
    them register a nick there. Services that must tell them apart can use a distinct ``url``.
    An archive query from someone not in the room (``mam``) sends the same GET with an empty
    ``nickname`` and ``action=mam`` added (our extension of the contract).

    At most ``pool_size`` checks are on the wire at once; the rest wait their turn inside the
    same total timeout, so a burst of joins neither opens hundreds of sockets nor waits forever.
    The MUC service never asks for more than ``pool_size`` at once (its join queue holds the
    rest), so for a join the timeout counts from when its request is sent.

    ``on_check`` is called with every request and its Decision once a check completes
    (including cancelled ones, of kind ``cancelled``): the hook metrics use to time the
    HTTP service itself, one observation per request on the wire, whatever joins shared it.

    Each check is one ``get`` on a treq ``HTTPClient`` built once, over an agent of our own
    for the service's one origin (:class:`~mucauth.authorize.agent.OriginAgent`: persistent
    connections, at most ``pool_size``, answers parsed by httptools), set up so that treq's
    per-request layers cost little and change nothing on the wire: a cookie jar that keeps
    nothing (:class:`_NoCookies`), no content coding (the agent leaves treq's
    ``Accept-Encoding`` out and never shows a ``Content-Encoding``, so nothing is inflated),
    a URL already in URI form (:class:`_URIForm`), one
    ``Headers`` object for every check (treq takes it as is; every layer below copies before
    it adds), ``allow_redirects=False`` (no redirect agent), ``unbuffered=True`` (no buffered
    response: :class:`_CappedBody` reads the body, through treq's response wrapper), no
    ``data``/``params``/``auth``/``timeout`` (their steps are skipped; the deadline is ours).
    ``http_client`` replaces that client (tests pass treq's ``StubTreq``); it is called as
    treq's ``HTTPClient.get`` is.
    """

    def __init__(
        self,
        settings: HTTPAuthSettings,
        reactor: Any,  # IReactorTime + IReactorTCP (+ IReactorSSL for https)
        *,
        http_client: Any = None,
        on_check: Callable[[JoinRequest, Decision], None] | None = None,
        log_level: LogLevel = LogLevel.debug,
    ) -> None:
        self._settings = settings
        self._reactor = reactor
        # The per-check event is at debug: below [log] level it is dropped before it is built.
        self._events: LevelLogger = LevelLogger(namespace=log.namespace, level=log_level)
        url, basic = _split_userinfo(settings.url)
        # The query parameters appended per check are percent-encoded ASCII already.
        self._url = _uri_form(url)
        authorization = settings.authorization_header or basic
        self._headers = Headers(
            {
                b"Accept": [b"application/json"],
                b"User-Agent": [f"mucauth/{mucauth.__version__}".encode("ascii")],
            }
        )
        if authorization is not None:
            self._headers.setRawHeaders(b"Authorization", [authorization.reveal().encode("utf-8")])
        # Turns: at most pool_size checks ask at once; the others wait in order.
        self._free = max(1, settings.pool_size)
        self._queue: deque[_Check] = deque()
        self._on_check = on_check
        self._pool: CountingConnectionPool | None = None
        if http_client is None:
            agent = OriginAgent(
                reactor,
                self._url,
                _policy_for(settings),
                connect_timeout=settings.timeout,
                max_connections=settings.pool_size,
            )
            self._pool = agent.pool
            http_client = CheckClient(agent)
        self._client = http_client
        # The client's own jar (which keeps nothing), or one like it for an injected client: treq
        # makes no jar from a dict per check.
        self._jar = http_client._cookiejar if isinstance(http_client, CheckClient) else _NoCookies()
        if settings.insecure:
            log.warn(
                "TLS verification is OFF for the authorization service {url} (insecure = true)",
                url=redact_url(settings.url),
            )

    @property
    def open_connections(self) -> int:
        """Connections to the service open now, busy or idle (0 with an injected client)."""
        return 0 if self._pool is None else self._pool.open_connections

    def close(self) -> Deferred[None]:
        """Drop idle persistent connections: for shutdown and tests."""
        if self._pool is None:
            return succeed(None)
        return self._pool.close_idle()

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        check = _Check(self, request)
        check.timer = self._reactor.callLater(self._settings.timeout, check.expire)
        if self._free:
            self._free -= 1
            check.start()
        else:
            self._queue.append(check)
        return check.decided

    def _turn_ended(self) -> None:
        """A check that held a turn is done: the next queued one still waiting takes it."""
        queue = self._queue
        while queue:
            if queue.popleft().start():
                return
        self._free += 1

    def _log(self, request: JoinRequest, decision: Decision, failure: Failure | None) -> None:
        """The HTTP side of a decision: values as fields, never the Authorization value.

        At debug level: the MUC service logs the decision an operator reads (at info, or warn
        for errors) with the same fields, and a second info line per join would only double
        the log. Unexpected failures still go out as log.failure with their traceback. Below
        ``log_level`` the event is not even built.
        """
        events = self._events
        if failure is None and events.level > LogLevel.debug:
            return
        fields: dict[str, Any] = {
            "action": request.action,
            "user": request.user.userhost(),
            "room": request.room.userhost(),
            "nick": request.nick,
            "outcome": decision.outcome,
            "kind": decision.kind,
            "reason": decision.reason,
            "status": decision.status,
            "latency_ms": round(decision.latency * 1000, 1),
            "affiliation": decision.affiliation,
            "role": decision.role,
        }
        if failure is not None:
            events.failure(_FORMAT, failure, **fields)
        else:
            events.debug(_FORMAT, **fields)


class _Check:
    """One check, from its call to its Decision; its steps are its methods.

    A check takes a turn (or waits for one), sends its GET through the client, reads the body
    with a cap (:class:`_CappedBody`, which reports here), and fires :attr:`decided` once. One
    deadline covers waiting, connecting, headers and body: :meth:`expire` stops whichever step
    is under way, and with it the connection. :attr:`decided` is the caller's, so that its
    cancellation (the user left) is told apart from the deadline's.

    An object per check rather than closures and a chain of Deferreds per check: the first
    version of this gate spent ~60k instructions a check on those (bench/PROFILE.md).
    """

    __slots__ = (
        "auth",
        "cancelled",
        "decided",
        "done",
        "holding",
        "pending",
        "reader",
        "request",
        "started",
        "status",
        "timed_out",
        "timer",
    )

    def __init__(self, auth: HTTPAuthorizer, request: JoinRequest) -> None:
        self.auth = auth
        self.request = request
        self.started: float = auth._reactor.seconds()
        self.status: int | None = None  # once headers arrive, so later failures carry it
        self.timed_out = False
        self.cancelled = False  # the caller gave up (the user left)
        self.done = False
        self.holding = False  # holds one of the pool_size turns
        self.pending: Deferred[Any] | None = None  # the client's, until headers arrive
        self.reader: _CappedBody | None = None
        self.timer: Any = None
        self.decided: Deferred[Decision] = Deferred(self._cancel)

    def start(self) -> bool:
        """Ask the service, with a turn given; False if this check is over already (it then
        gives no turn back)."""
        if self.done:
            return False
        auth = self.auth
        if auth._reactor.seconds() >= self.started + auth._settings.timeout:
            # The turn came as this check's own deadline came: asking now would open a
            # connection only to drop it, and when a hung service's checks expire every queued
            # check would do so in turn.
            self.timed_out = True
            self._failed(Failure(CancelledError()))
            return False
        self.holding = True
        try:
            pending = auth._client.get(
                _URIForm.of(_query_url(auth._url, self.request)),
                headers=auth._headers,
                # The client's own jar (which keeps nothing): no jar is made from a dict.
                cookies=auth._jar,
                allow_redirects=False,
                unbuffered=True,
                # Only treq's own timeout= would use it: it keeps treq off the global reactor.
                reactor=auth._reactor,
            )
        except Exception:
            self._failed(Failure())
            return True
        if not self.done:
            self.pending = pending
        pending.addCallback(self._response).addErrback(self._failed)
        return True

    def _response(self, response: IResponse) -> None:
        self.pending = None
        if self.done:
            return
        self.status = response.code
        self.reader = _CappedBody(MAX_BODY, self)
        response.deliverBody(self.reader)

    def expire(self) -> None:
        if not self.done:
            self.timed_out = True
            self._stop()

    def _cancel(self, _: Deferred[Decision]) -> None:
        if not self.done:
            self.cancelled = True
            self._stop()

    def _stop(self) -> None:
        """Abort whichever step is under way; each ends in :meth:`_failed`."""
        if self.reader is not None:
            self.reader.stop(Failure(CancelledError()))
        elif self.pending is not None:
            self.pending.cancel()
        else:
            self._failed(Failure(CancelledError()))  # still waiting for a turn

    def answered(self, body: bytes) -> None:
        if not self.done:
            self._decide(interpret(self.status or 0, body), None)

    def _failed(self, failure: Failure) -> None:
        if self.done:
            return
        if self.timed_out:
            decision = Decision.error("timeout", f"no answer in {self.auth._settings.timeout} s")
        elif self.cancelled:
            # Whatever the step that was interrupted made of it: a connection attempt
            # cancelled while resolving the host name fails with DNSLookupError.
            decision = Decision.cancelled()
        else:
            kind, reason = _failure_kind(failure)
            self._decide(Decision.error(kind, reason), failure if kind == "internal" else None)
            return
        self._decide(decision, None)

    def _decide(self, decision: Decision, unexpected: Failure | None) -> None:
        self.done = True
        self.pending = None
        self.reader = None
        auth = self.auth
        timer = self.timer
        if timer is not None and timer.active():
            timer.cancel()
        if self.holding:
            self.holding = False
            auth._turn_ended()
        try:
            decision = decision.with_details(
                status=self.status,
                latency=max(0.0, auth._reactor.seconds() - self.started),
                source="http",
            )
            auth._log(self.request, decision, unexpected)
            if auth._on_check is not None:
                auth._on_check(self.request, decision)
        except Exception:
            # Keeps the "never errbacks" promise should the code above itself fail.
            decision = _last_resort(Failure())
        self.decided.callback(decision)


_FORMAT = (
    "{action} {outcome} user={user} room={room} nick={nick} kind={kind} status={status}"
    " latency_ms={latency_ms} reason={reason}"
)


def _last_resort(failure: Failure) -> Decision:
    """Keeps the "never errbacks" promise should the code above itself fail."""
    log.failure("authorization check failed unexpectedly", failure)
    return Decision.error("internal", type(failure.value).__name__)
