"""The component link: the one TCP stream to the XMPP server, with honest backoff and logs.

Wokkel's :class:`~wokkel.component.Component` reconnects through a
:class:`~twisted.internet.protocol.ReconnectingClientFactory` that resets its backoff as soon as
TCP connects. A server that accepts the connection and then refuses the handshake (a wrong
secret: Prosody answers ``not-authorized``) is therefore retried about once a second, forever,
and nothing says why. Here the backoff is reset only once the handshake succeeds, the delay is
capped by ``reconnect_max_delay``, and every step of the link is one structured log event:
connecting, authenticated, authentication failed (with the stream error condition), disconnected
and reconnect scheduled. The secret is never logged.

A link that was up for a while and drops is retried at once, not after the first backoff step:
the usual cause is a server restart or a network blip, this process's rooms are unreachable
meanwhile (behind ejabberd's domain_balancing the server drops their stanzas without a word),
and one immediate attempt costs nothing. If it fails, the normal backoff follows. A link dropped
soon after its handshake (another process taking the component domain over) gets no immediate
retry, so two processes fighting over one domain cannot spin.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IConnector, IReactorTime, ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from wokkel.component import Component
from wokkel.subprotocols import StreamManager

from mucauth.settings import ComponentSettings

__all__ = ["ComponentLink", "LinkFactory"]

# The stream errors that mean "your credentials are wrong", as opposed to "go away for now".
AUTH_CONDITIONS = frozenset({"not-authorized", "host-unknown", "invalid-from"})

# Seconds an authenticated link must have lasted for its loss to be retried immediately.
STABLE_LINK = 5.0


def _describe(reason: Failure | None) -> str:
    if reason is None:
        return "closed"
    return reason.getErrorMessage() or reason.type.__name__


class LinkFactory(xmlstream.XmlStreamFactory):
    """An XmlStreamFactory whose backoff survives connections that never authenticate."""

    log = Logger()
    noisy = False  # our own structured events replace the factory's "Starting factory" lines

    def __init__(self, authenticator: xmlstream.ConnectAuthenticator, jid: JID) -> None:
        super().__init__(authenticator)
        self.jid = jid
        self.last_stream_error: str | None = None
        self._up_since: float | None = None  # when the current link authenticated
        # Set by retry_after: the next loss is this process's own doing, retried after exactly
        # this many seconds (a standby that holds no slot, mucauth.slots).
        self._planned_delay: float | None = None
        self.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)
        self.addBootstrap(xmlstream.STREAM_ERROR_EVENT, self._stream_error)

    def buildProtocol(self, addr: Any) -> xmlstream.XmlStream:
        # XmlStreamFactory resets the backoff on every TCP connection; keep it until the
        # handshake succeeds (_authenticated), so a refused secret backs off like a refused port.
        delay, retries = self.delay, self.retries
        xs = super().buildProtocol(addr)
        self.delay, self.retries = delay, retries
        self.last_stream_error = None
        return xs

    def startedConnecting(self, connector: IConnector) -> None:
        destination = connector.getDestination()
        self.log.info(
            "component link: connecting to {host}:{port} as {jid}",
            host=getattr(destination, "host", None),
            port=getattr(destination, "port", None),
            jid=self.jid.full(),
            link_event="connecting",
        )

    def _clock(self) -> IReactorTime:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor  # type: ignore[assignment]  # Twisted types it as None
        return self.clock  # type: ignore[return-value]

    def _authenticated(self, xs: xmlstream.XmlStream) -> None:
        self.resetDelay()
        self._up_since = self._clock().seconds()
        self.log.info(
            "component link: authenticated as {jid}",
            jid=self.jid.full(),
            link_event="authenticated",
        )

    def _stream_error(self, reason: Failure) -> None:
        condition = getattr(reason.value, "condition", None) or "undefined-condition"
        self.last_stream_error = condition
        text = getattr(reason.value, "text", None) or ""
        if condition == "conflict":
            # Prosody allows one connection per component domain (component_conflict_resolve
            # kick_new): this process is a standby until the other connection goes away.
            self.log.warn(
                "component link: {jid} is already connected from elsewhere: {condition} {text}"
                " (this process keeps retrying as a standby; to share rooms between processes,"
                " see 'Scaling out' in the README)",
                jid=self.jid.full(),
                condition=condition,
                text=text,
                link_event="conflict",
            )
        elif condition in AUTH_CONDITIONS:
            self.log.error(
                "component link: the server refused {jid}: {condition} {text}"
                " (check the component secret and the server's component domain)",
                jid=self.jid.full(),
                condition=condition,
                text=text,
                link_event="authentication_failed",
            )
        else:
            self.log.warn(
                "component link: stream error from the server: {condition} {text}",
                condition=condition,
                text=text,
                link_event="stream_error",
            )

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.log.warn(
            "component link: cannot connect: {reason}",
            reason=_describe(reason),
            link_event="connect_failed",
        )
        super().clientConnectionFailed(connector, reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        # stopTrying() has run: we are shutting down and closed the link ourselves, which is
        # news, not trouble; so is a link closed on purpose (retry_after).
        planned = self._planned_delay is not None
        emit = self.log.warn if self.continueTrying and not planned else self.log.info
        emit(
            "component link: disconnected: {reason}",
            reason=_describe(reason),
            stream_error=self.last_stream_error,
            link_event="disconnected",
        )
        super().clientConnectionLost(connector, reason)

    def retry_after(self, delay: float) -> None:
        """Reconnect ``delay`` seconds after the next loss of the link, whatever the backoff
        says: for a link this process is about to close on purpose."""
        self._planned_delay = delay

    def retry(self, connector: IConnector | None = None) -> None:
        up_since, self._up_since = self._up_since, None
        planned, self._planned_delay = self._planned_delay, None
        if planned is not None and self.continueTrying:
            self._reconnect_later(connector, planned)
            return
        stable = up_since is not None and self._clock().seconds() - up_since >= STABLE_LINK
        if stable and self.continueTrying:
            self._reconnect_now(connector)
            return
        super().retry(connector)
        call = self._callID
        if call is not None and call.active():
            clock = self.clock
            # Twisted jitters the delay after capping it, so half the retries at the cap came
            # later than reconnect_max_delay (by up to a third): the cap is applied last here.
            if call.getTime() - clock.seconds() > self.maxDelay:
                call.reset(self.maxDelay)
            self.log.info(
                "component link: reconnecting in {delay:.1f} s",
                delay=call.getTime() - clock.seconds(),
                retries=self.retries,
                link_event="reconnect_scheduled",
            )

    def _reconnect_later(self, connector: IConnector | None, delay: float) -> None:
        target = connector if connector is not None else self.connector
        if target is None:
            raise ValueError("no connector to retry")

        def reconnect() -> None:
            self._callID = None
            target.connect()

        self._callID = self._clock().callLater(delay, reconnect)  # type: ignore[assignment]
        self.log.info(
            "component link: reconnecting in {delay:.1f} s",
            delay=delay,
            retries=self.retries,
            link_event="reconnect_scheduled",
        )

    def _reconnect_now(self, connector: IConnector | None) -> None:
        """One attempt right away; the backoff, still at its first step, follows if it fails."""
        target = connector if connector is not None else self.connector
        if target is None:
            raise ValueError("no connector to retry")

        def reconnect() -> None:
            self._callID = None
            target.connect()

        self._callID = self._clock().callLater(0, reconnect)  # type: ignore[assignment]
        self.log.info(
            "component link: reconnecting now",
            delay=0.0,
            retries=self.retries,
            link_event="reconnect_scheduled",
        )


class ComponentLink(Component):
    """A Wokkel Component with :class:`LinkFactory`: capped backoff, logged link events.

    ``stopService`` returns a Deferred that fires once the connection is really closed, so
    stanzas written just before (shutdown notices) leave the transport before the reactor stops.
    """

    log = Logger()

    def __init__(self, settings: ComponentSettings) -> None:
        # Component.__init__ would build a plain XmlStreamFactory; this is its body with ours.
        self.host = settings.host
        self.port = settings.port
        authenticator = jabber_component.ConnectComponentAuthenticator(
            settings.jid.full(), settings.secret.reveal()
        )
        factory = LinkFactory(authenticator, settings.jid)
        factory.maxDelay = settings.reconnect_max_delay  # type: ignore[assignment]  # a float works
        StreamManager.__init__(self, factory)
        self._closed: defer.Deferred[None] | None = None
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._opened)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, self._ended)

    def _opened(self, xs: xmlstream.XmlStream) -> None:
        self._closed = defer.Deferred()
        # Every stanza is latency: a presence waiting for the ACK of the previous segment
        # (Nagle's algorithm against the server's delayed ACK) waits up to ~40 ms. Twisted
        # already sends what one reactor turn wrote in one go, which is all Nagle would add.
        tcp = ITCPTransport(xs.transport, None)
        if tcp is not None:
            tcp.setTcpNoDelay(True)

    def _ended(self, reason: Failure) -> None:
        # XmlStream.connectionLost dispatches STREAM_END_EVENT: the socket is closed by now.
        closed, self._closed = self._closed, None
        if closed is not None:
            closed.callback(None)

    def initializationFailed(self, reason: Failure) -> None:
        # Wokkel stops the whole service here, which would end reconnection for good. A failed
        # handshake is logged by LinkFactory; drop this connection and let the backoff retry.
        self.log.error(
            "component link: stream initialization failed: {reason}",
            reason=_describe(reason),
            link_event="initialization_failed",
        )
        if self.xmlstream is not None and self.xmlstream.transport is not None:
            self.xmlstream.transport.loseConnection()

    def stopService(self) -> defer.Deferred[None]:
        closed = self._closed
        if getattr(self, "_connection", None) is None:
            # Never started: Wokkel's stopService would trip over the missing connector.
            Service.stopService(self)
            self.factory.stopTrying()
            return defer.succeed(None)
        super().stopService()
        if closed is None:
            return defer.succeed(None)
        return closed
