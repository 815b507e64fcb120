"""The guard on the component stream: every element written goes through ``muc/xml.py``.

Wokkel's handlers, Twisted's ``toResponse`` and ``StanzaError``, and the service's own
:class:`~mucauth.muc.xml.Stanza` all end in ``XmlStream.send``, which would ask each element
for its own ``toXml()`` (domish's serializer, for all but our stanzas). :func:`guard` replaces
the stream's ``send`` so that any element, whatever built it, is written by
:func:`~mucauth.muc.xml.serialize_bytes` with the stream's namespace and prefixes, and only if
it fits under ``[limits] max_stanza_size`` (the XMPP server drops a component that sends more,
and every room with it).

A stanza that cannot be written, or is too large, is not written: one warning is logged (its
kind, addressee, the reason and size, never its content), it is counted (``REFUSED_EVENT`` is
dispatched on the stream with the reason, which the metrics' link handler counts) and, so that
nobody waits for an answer that will never come, an iq is answered in its place:

- our answer to someone's request (a ``result``) becomes an error to them, same id;
- our own request (a ``get`` or ``set``, a relayed one included) is answered as if its
  addressee had refused it: an error is dispatched on the stream as if received, so the relay
  or the request's Deferred sees it at once.

Strings (the stream's header and footer, written by Twisted) pass as they are; anything else
is taken for an element (``IElement``), and what is not one is refused as unwritable.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.xmlstream import XmlStream
from twisted.words.xish import domish
from twisted.words.xish import xmlstream as xish_xmlstream

from mucauth.muc.xml import Unwritable, serialize_bytes

__all__ = ["REFUSED_EVENT", "OutboundGuard", "guard"]

# Dispatched on the stream with the reason ("unwritable" or "too_large") for each refusal.
REFUSED_EVENT = "//event/mucauth/outbound-refused"
UNWRITABLE = "unwritable"
TOO_LARGE = "too_large"
_KINDS = frozenset({"message", "presence", "iq"})
_TEXTS = {
    UNWRITABLE: "The answer could not be written as XML",
    TOO_LARGE: "The answer is too large",
}
# Addresses are logged at most this long, non-printable characters escaped.
_ADDRESS_LOGGED = 200

log = Logger(namespace="mucauth.muc.outbound")


def _printable(value: str | None) -> str | None:
    if value is None:
        return None
    value = value[:_ADDRESS_LOGGED]
    return value if value.isprintable() else ascii(value)[1:-1]


class OutboundGuard:
    """The replacement of one stream's ``send``; :func:`guard` installs it."""

    def __init__(
        self,
        stream: XmlStream,
        max_size: Callable[[], int],
        clock: IReactorTime | None,
        on_refused: Callable[[str], None] | None,
    ) -> None:
        self._stream = stream
        self._send = stream.send  # Twisted's, for what is not an element
        # Bytes go straight to the writing layer under Twisted's send (which would only ask
        # again whether they are an element): the stream's raw data hook and its transport.
        self._write = partial(xish_xmlstream.XmlStream.send, stream)
        self._max_size = max_size
        self._clock = clock
        self._on_refused = on_refused
        self.refused: dict[str, int] = {UNWRITABLE: 0, TOO_LARGE: 0}

    def send(self, obj: Any) -> None:
        if isinstance(obj, (str, bytes)):  # the stream's header and footer: Twisted's text
            self._send(obj)
            return
        stream = self._stream
        prefixes = stream.prefixes
        try:
            data = serialize_bytes(obj, stream.namespace, prefixes, prefixes.values())
        except Unwritable as e:
            self._refuse(obj, UNWRITABLE, e.reason, None)
            return
        if len(data) > self._max_size():
            self._refuse(obj, TOO_LARGE, "over max_stanza_size", len(data))
            return
        self._write(data)

    def _refuse(self, stanza: Any, reason: str, why: str, size: int | None) -> None:
        name = getattr(stanza, "name", None)
        kind = name if name in _KINDS else "other"
        log.warn(
            "way out: {kind} to {to} not written: {why} ({size} bytes)",
            kind=kind,
            to=_printable(_attribute(stanza, "to")),
            reason=reason,
            why=why,
            size=size,
        )
        self.refused[reason] += 1
        if self._on_refused is not None:
            self._on_refused(reason)
        self._stream.dispatch(reason, REFUSED_EVENT)
        if kind == "iq":
            self._answer(stanza, reason)

    def _answer(self, iq: Any, reason: str) -> None:
        kind = _attribute(iq, "type")
        if kind == "result":
            # Our answer to a request: the requester gets an error in its place.
            self.send(_error(iq, _attribute(iq, "from"), _attribute(iq, "to"), reason))
        elif kind in ("get", "set"):
            # Our own request: answered as if its addressee had refused it.
            error = _error(iq, _attribute(iq, "to"), _attribute(iq, "from"), reason)
            if self._clock is None:
                self._stream.dispatch(error)
            else:
                self._clock.callLater(0, self._stream.dispatch, error)


def _attribute(stanza: Any, name: str) -> str | None:
    value = stanza.attributes.get(name) if hasattr(stanza, "attributes") else None
    return value if isinstance(value, str) else None


def _error(iq: Any, sender: str | None, to: str | None, reason: str) -> domish.Element:
    """A small error iq; the addresses and id only if they can be written themselves."""
    error = domish.Element((None, "iq"))
    error["type"] = "error"
    for key, value in (("from", sender), ("to", to), ("id", _attribute(iq, "id"))):
        if value is not None:
            error[key] = value
    error.addChild(StanzaError("resource-constraint", "wait", _TEXTS[reason]).getElement())
    return error


def guard(
    stream: XmlStream,
    max_size: Callable[[], int],
    *,
    clock: IReactorTime | None = None,
    on_refused: Callable[[str], None] | None = None,
) -> OutboundGuard:
    """Installs the guard on ``stream`` (once: a second call returns the first guard).

    ``max_size`` is read for each stanza (the settings may be replaced while running);
    ``clock`` delays the answers to our own refused requests by one turn, so that whoever sent
    one has finished sending it; ``on_refused(reason)`` hears each refusal.
    """
    current = getattr(stream.send, "__self__", None)
    if isinstance(current, OutboundGuard):
        return current
    installed = OutboundGuard(stream, max_size, clock, on_refused)
    stream.send = installed.send  # type: ignore[method-assign]
    return installed
