"""An example room-authorization service for mucauth, small enough to read and copy.

mucauth asks an HTTP service before anyone enters a room:

    GET /muc/join?userJID=alice@example.org&mucJID=lobby@rooms.example.org&nickname=Alice

and admits the user only on a 2xx answer whose body is ``{"allowed": true}``. Anything else
refuses the join: ``{"allowed": false, "error": "why"}`` is a refusal with a reason (mucauth logs
the reason; it shows it to the user only with ``show_reason = true``).

This service answers from a JSON rules file::

    {
      "default_reason": "You are not on the list for this room",
      "rules": [
        {"user": "alice@localhost", "room": "*"},
        {"user": "bob@localhost", "room": "staff", "allow": false, "reason": "Staff only"},
        {"user": "*", "room": "lobby@rooms.localhost", "nicks": ["bob", "carol"]}
      ]
    }

The first rule whose ``user`` and ``room`` match decides. ``user`` is a bare JID or ``*``;
``room`` is a room name (the local part, on any MUC service), a full room JID or ``*``;
``allow`` defaults to true; ``nicks`` (a string or a list), when given, is the only nicknames the
user may take; ``reason`` is the refusal text; ``affiliation`` and ``role``, when given, go
with a yes as mucauth's extension of the answer (the joiner's standing in the room). A request
no rule matches is refused with ``default_reason``.

Run it::

    python examples/auth_service.py --rules examples/rules.json --port 8080

Edit the rules file while it runs: the next request reads it again (an edit that does not
parse is logged and the old rules stay).

With ``--token-file F`` it expects ``Authorization: Bearer <the token in F>`` and answers 401
otherwise (set ``authorization_header = Bearer <token>`` in mucauth's tap.conf). With
``--tls-cert``/``--tls-key`` it speaks HTTPS. Every request is logged on stdout, never the token.

``--test-answers`` is for mucauth's own end-to-end tests only: it lets a rule misbehave (answer
slowly, with a 500, a redirect, a body that is not a yes...) and adds a ``/requests`` page listing
what was asked and a ``/stats`` page counting requests and the most in flight at once. See the
section at the end of this file; an operator can delete it.
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor, ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

log = Logger(namespace="auth_service")

RULE_KEYS = {
    "user",
    "room",
    "allow",
    "nicks",
    "reason",
    "answer",
    "delay",
    "affiliation",
    "role",
}
# mucauth's extension of the answer: the joiner's standing, sent with a yes.
STANDING = {
    "affiliation": ("owner", "admin", "member", "none"),
    "role": ("moderator", "participant", "visitor"),
}


class RulesError(Exception):
    """A rules file we cannot use; the message names the file, the rule and the problem."""


@dataclass(frozen=True)
class Rule:
    user: str  # bare JID, lower-cased, or "*"
    room: str  # room name, full room JID (both lower-cased) or "*"
    allow: bool = True
    nicks: frozenset[str] | None = None  # None: any nickname
    reason: str = ""
    answer: str | None = None  # a test misbehaviour (--test-answers only)
    delay: float = 5.0  # seconds, for the "slow" answer
    affiliation: str | None = None  # sent with a yes: the joiner's affiliation in the room
    role: str | None = None  # sent with a yes: the joiner's role

    def matches(self, user: str, room: str) -> bool:
        if self.user not in ("*", user):
            return False
        if self.room == "*":
            return True
        if "@" in self.room:
            return self.room == room
        return self.room == room.split("@", 1)[0]


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    default_reason: str = "You are not on the list for this room"

    def decide(self, user: str, room: str, nick: str) -> tuple[Rule | None, bool, str]:
        """(the matching rule, allowed, reason). JIDs compare case-insensitively. An empty
        ``nick`` (an archive query, ``action=mam``) is nobody's nickname: ``nicks`` does not
        apply to it."""
        user, room = user.lower(), room.lower()
        for rule in self.rules:
            if rule.matches(user, room):
                if not rule.allow:
                    return rule, False, rule.reason or self.default_reason
                if rule.nicks is not None and nick and nick not in rule.nicks:
                    return rule, False, rule.reason or f"The nickname {nick!r} is not yours"
                return rule, True, ""
        return None, False, self.default_reason


def load_rules(path: Path, *, test_answers: bool = False) -> Rules:
    """Read and check the rules file up front, so a typo stops start-up instead of refusing
    (or admitting) people later."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise RulesError(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise RulesError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulesError(f'{path}: expected an object with a "rules" list')
    default_reason = data.get("default_reason", Rules.default_reason)
    if not isinstance(default_reason, str):
        raise RulesError(f"{path}: default_reason: expected a string")
    rules = []
    for number, raw in enumerate(data["rules"], start=1):
        where = f"{path}: rule {number}"
        if not isinstance(raw, dict):
            raise RulesError(f"{where}: expected an object")
        unknown = set(raw) - RULE_KEYS
        if unknown:
            raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("user", "room"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise RulesError(f"{where}: {key}: expected a bare JID, a name or *")
        nicks = raw.get("nicks")
        if isinstance(nicks, str):
            nicks = [nicks]
        if nicks is not None and not (
            isinstance(nicks, list) and all(isinstance(n, str) for n in nicks)
        ):
            raise RulesError(f"{where}: nicks: expected a string or a list of strings")
        if not isinstance(raw.get("allow", True), bool):
            raise RulesError(f"{where}: allow: expected true or false")
        answer = raw.get("answer")
        if answer is not None:
            if not test_answers:
                raise RulesError(f"{where}: answer: only allowed with --test-answers")
            if answer not in TEST_ANSWERS:
                raise RulesError(
                    f"{where}: answer: {answer!r} is not one of {', '.join(sorted(TEST_ANSWERS))}"
                )
        for key, allowed_values in STANDING.items():
            if raw.get(key) is not None and raw[key] not in allowed_values:
                raise RulesError(f"{where}: {key}: expected one of {', '.join(allowed_values)}")
        delay = raw.get("delay", 5.0)
        if not isinstance(delay, int | float) or delay < 0:
            raise RulesError(f"{where}: delay: expected a number of seconds")
        rules.append(
            Rule(
                user=raw["user"].lower(),
                room=raw["room"].lower(),
                allow=raw.get("allow", True),
                nicks=None if nicks is None else frozenset(nicks),
                reason=str(raw.get("reason", "")),
                answer=answer,
                delay=float(delay),
                affiliation=raw.get("affiliation"),
                role=raw.get("role"),
            )
        )
    return Rules(tuple(rules), default_reason)


def json_body(request: Request, code: int, answer: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(answer).encode()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file does: a file replaced (written elsewhere, renamed over it)
    is a new inode even within the clock's granularity."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


class JoinResource(Resource):
    """Answers the mucauth / mod_muc_http_auth question at one path."""

    isLeaf = True

    def __init__(
        self,
        rules: Rules,
        path: bytes,
        token: str | None,
        test_answers: bool = False,
        rules_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.rules = rules
        # The rules file, read again when it changes (the application's lists change; mucauth's
        # re-checks and revocations act on the new answers).
        self.rules_path = rules_path
        self._rules_stamp = _stamp(rules_path) if rules_path is not None else None
        self.path = path
        self.token = token
        self.test_answers = test_answers
        self.requests: list[dict[str, Any]] = []  # kept only with --test-answers
        self.load = Load()  # likewise

    def fresh_rules(self) -> Rules:
        """The rules, read again if the file changed since; a broken edit keeps the old ones."""
        if self.rules_path is None:
            return self.rules
        stamp = _stamp(self.rules_path)
        if stamp != self._rules_stamp:
            self._rules_stamp = stamp
            try:
                self.rules = load_rules(self.rules_path, test_answers=self.test_answers)
            except (RulesError, OSError) as e:
                log.error("rules not reloaded, the old ones stay: {error}", error=str(e))
            else:
                log.info(
                    "{n} rules reloaded from {file}", n=len(self.rules.rules), file=self.rules_path
                )
        return self.rules

    def render_GET(self, request: Request) -> bytes | int:
        if self.test_answers and request.path == b"/requests":
            return json_body(request, 200, {"requests": self.requests})
        if self.test_answers and request.path == b"/stats":
            return json_body(request, 200, self.load.stats())
        if self.test_answers and request.path == b"/yes":  # where the "redirect" answer points
            return json_body(request, 200, {"allowed": True})
        if request.path != self.path:
            return json_body(request, 404, {"allowed": False, "error": "no such page"})

        query: dict[bytes, list[bytes]] = request.args or {}
        args = {k.decode(): v[0].decode() for k, v in query.items()}
        user, room, nick = args.get("userJID"), args.get("mucJID"), args.get("nickname")
        action = args.get("action", "join")
        auth_state = self.check_authorization(request)
        if self.test_answers:
            self.load.started(request, args)
            self.requests.append(
                {
                    "uri": request.uri.decode(),
                    "args": args,
                    "authorization": auth_state,
                    "user_agent": (request.getHeader(b"user-agent") or b"").decode(),
                }
            )
        if auth_state != "ok":
            log.info("{uri} -> 401 (authorization {state})", uri=request.uri, state=auth_state)
            request.setHeader(b"www-authenticate", b'Bearer realm="mucauth"')
            return json_body(request, 401, {"allowed": False, "error": "unauthorized"})
        # mucauth asks about an archive reader with action=mam and an empty nickname.
        if not (user and room and (nick or args.get("action") == "mam")):
            log.info("{uri} -> 400 (userJID, mucJID and nickname are required)", uri=request.uri)
            return json_body(request, 400, {"allowed": False, "error": "missing parameter"})

        rule, allowed, reason = self.fresh_rules().decide(user, room, nick or "")
        if self.test_answers and rule is not None and rule.answer is not None:
            log.info(
                "user={user} room={room} nick={nick} -> test answer {answer}",
                user=user, room=room, nick=nick, answer=rule.answer,
            )  # fmt: skip
            return TEST_ANSWERS[rule.answer](request, rule, allowed, reason)
        log.info(
            "user={user} room={room} nick={nick}{action} -> {outcome}{why}",
            user=user, room=room, nick=nick, action=f" action={action}" if action != "join" else "",
            outcome="allowed" if allowed else "refused", why=f" ({reason})" if reason else "",
        )  # fmt: skip
        return answer(request, allowed, reason, rule)

    def check_authorization(self, request: Request) -> str:
        """ "ok", "missing" or "wrong". Compared in constant time; the token is never logged."""
        if self.token is None:
            return "ok"
        given = request.getHeader(b"authorization")
        if given is None:
            return "missing"
        expected = f"Bearer {self.token}".encode()
        return "ok" if hmac.compare_digest(given, expected) else "wrong"


def answer(request: Request, allowed: bool, reason: str, rule: Rule | None = None) -> bytes:
    if allowed:
        body: dict[str, Any] = {"allowed": True}
        if rule is not None:
            for key in STANDING:
                if getattr(rule, key) is not None:
                    body[key] = getattr(rule, key)
        return json_body(request, 200, body)
    return json_body(request, 200, {"allowed": False, "error": reason})


class QuietSite(Site):
    """The resource logs one line per request itself; no second access-log line."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An example room-authorization service.")
    parser.add_argument("--rules", required=True, type=Path, help="JSON rules file")
    parser.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free one")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--path", default="/muc/join", help="where the question is asked")
    parser.add_argument("--token-file", type=Path, help="expect Authorization: Bearer <token>")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument(
        "--test-answers", action="store_true", help="mucauth's tests only: allow rule 'answer'"
    )
    options = parser.parse_args(argv)
    if bool(options.tls_cert) != bool(options.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if not options.path.startswith("/"):
        parser.error("--path must start with /")

    try:
        rules = load_rules(options.rules, test_answers=options.test_answers)
        token = None
        if options.token_file:
            token = options.token_file.read_text().strip()
            if not token:
                raise RulesError(f"{options.token_file}: empty token file")
    except (RulesError, OSError) as e:
        print(f"auth_service: {e}", file=sys.stderr)
        return 1

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    resource = JoinResource(
        rules, options.path.encode(), token, options.test_answers, rules_path=options.rules
    )
    site = QuietSite(resource)
    port: IListeningPort
    if options.tls_cert:
        pem = options.tls_key.read_bytes() + b"\n" + options.tls_cert.read_bytes()
        context = ssl.PrivateCertificate.loadPEM(pem).options()
        port = reactor.listenSSL(options.port, site, context, interface=options.interface)  # type: ignore[attr-defined]
        scheme = "https"
    else:
        # Twisted types the factory as ServerFactory[_ProtoWithFactory]; any protocol factory works.
        port = reactor.listenTCP(options.port, site, interface=options.interface)  # type: ignore[arg-type]
        scheme = "http"
    # One plain line that scripts and tests parse to learn the port (--port 0).
    address = port.getHost()
    assert isinstance(address, IPv4Address | IPv6Address)
    host = f"[{address.host}]" if ":" in address.host else address.host  # IPv6 in a URL
    print(f"listening on {scheme}://{host}:{address.port}{options.path}", flush=True)
    log.info(
        "{n} rules from {file}; token {token}",
        n=len(rules.rules), file=options.rules, token="required" if token else "not required",
    )  # fmt: skip
    reactor.run()  # type: ignore[attr-defined]
    return 0


# --------------------------------------------------------------------------------------------
# Misbehaviours for mucauth's end-to-end tests (--test-answers). Not for operators.
#
# A rule with "answer": NAME answers the join question wrongly on purpose, so the tests can
# check through the real stack that mucauth refuses the join (fail closed) and says why.
# --------------------------------------------------------------------------------------------


def _slow(request: Request, rule: Rule, allowed: bool, reason: str) -> int:
    """Answer correctly, but only after rule.delay seconds."""

    def later() -> None:
        request.write(answer(request, allowed, reason, rule))
        request.finish()

    call = reactor.callLater(rule.delay, later)  # type: ignore[attr-defined]
    # The client gave up (mucauth's timeout): nothing left to answer.
    request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
    return NOT_DONE_YET


def _stall(request: Request, rule: Rule, allowed: bool, reason: str) -> int:
    """Send the headers and half a body, then nothing more (the client must time out)."""
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"100")
    request.write(b'{"allowed": ')
    return NOT_DONE_YET


def _server_error(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    """A 500 that still says yes: only a 2xx may admit."""
    return json_body(request, 500, {"allowed": True})


def _redirect(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    """A 302 to a page that says yes: redirects must not be followed."""
    request.setResponseCode(302)
    request.setHeader(b"location", b"/yes")
    return b""


def _string_false(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    """A truthy string: only the JSON value true admits."""
    return json_body(request, 200, {"allowed": "false"})


def _bad_affiliation(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    """A yes with an affiliation outside the contract: mucauth must refuse it as a bad answer."""
    return json_body(request, 200, {"allowed": True, "affiliation": "emperor"})


def _not_json(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    request.setHeader(b"content-type", b"text/html")
    return b"<html><body>allowed: true</body></html>"


def _true_body(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    """JSON, but not an object."""
    request.setHeader(b"content-type", b"application/json")
    return b"true"


def _empty(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    return b""


def _huge(request: Request, rule: Rule, allowed: bool, reason: str) -> bytes:
    """A yes buried in 200 KB: larger than mucauth's 64 KiB cap."""
    return json_body(request, 200, {"allowed": True, "padding": "x" * 200_000})


class Load:
    """Requests answered and the most answered at once, per client (``/stats``).

    A client is told apart by the query parameters it adds to the contract's three (mucauth
    keeps a query string configured in its url), so tests running several mucauth processes
    see each one's peak, e.g. ``url = http://.../muc/join?shard=1``.
    """

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def started(self, request: Request, args: dict[str, str]) -> None:
        client = "&".join(
            f"{k}={v}"
            for k, v in sorted(args.items())
            if k not in ("userJID", "mucJID", "nickname", "action")
        )
        self.requests[client] = self.requests.get(client, 0) + 1
        now = self.in_flight[client] = self.in_flight.get(client, 0) + 1
        self.peak[client] = max(self.peak.get(client, 0), now)

        def finished(_: object) -> None:
            self.in_flight[client] -= 1

        request.notifyFinish().addBoth(finished)

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "in_flight": self.in_flight, "peak_in_flight": self.peak}


TEST_ANSWERS: dict[str, Callable[[Request, Rule, bool, str], bytes | int]] = {
    "slow": _slow,
    "stall": _stall,
    "500": _server_error,
    "redirect": _redirect,
    "string-false": _string_false,
    "bad-affiliation": _bad_affiliation,
    "not-json": _not_json,
    "true-body": _true_body,
    "empty": _empty,
    "huge": _huge,
}


if __name__ == "__main__":
    sys.exit(main())
