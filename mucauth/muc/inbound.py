"""Reading the component stream: domish's parser with a namespace separator no namespace holds.

Twisted's ``ExpatElementStream`` asks expat to report a namespaced name as ``"<uri> <local>"``,
a space between the two. Expat (2.4.5 and later) refuses a document whose namespace names hold
that separator, so ``<x xmlns='urn:a b'/>`` from any client, which XML allows and XMPP servers
pass on, failed the parser: Twisted then ends the stream, the component link drops and every
room empties. Here expat separates with U+0001, which XML 1.0 forbids in a document and hence
in any namespace name. domish's handlers do the rest; the one that starts an element is
written here, splitting at our separator, because domish offers no way to choose it.
"""

from __future__ import annotations

import pyexpat
from typing import Any

from twisted.words.xish import domish
from twisted.words.xish.xmlstream import XmlStream

__all__ = ["ElementStream", "read_with_our_parser"]

_SEPARATOR = "\x01"


class ElementStream(domish.ExpatElementStream):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        parser = pyexpat.ParserCreate("UTF-8", _SEPARATOR)
        for handler in (
            "StartElementHandler",
            "EndElementHandler",
            "CharacterDataHandler",
            "StartNamespaceDeclHandler",
            "EndNamespaceDeclHandler",
        ):
            setattr(parser, handler, getattr(self.parser, handler))
        self.parser = parser

    def _onStartElement(self, name: str, attrs: dict[Any, str]) -> None:
        """domish's element building, for names split at our separator: written out rather
        than handing domish a rewritten name, which cost a second call per element."""
        uri, _, local = name.rpartition(_SEPARATOR)
        qualified = None
        for key in attrs:
            if _SEPARATOR in key:
                qualified = [*(qualified or ()), key]
        if qualified:
            for key in qualified:
                attr_uri, _, attr_name = key.rpartition(_SEPARATOR)
                attrs[(attr_uri, attr_name)] = attrs.pop(key)
        element = domish.Element((uri, local), self.defaultNsStack[-1], attrs, self.localPrefixes)
        self.localPrefixes = {}
        if not self.documentStarted:  # the stream's own header
            self.documentStarted = 1
            self.DocumentStartEvent(element)
            return
        self.elementCount += 1
        if self.elementCount > self.maxElementCount:
            raise domish.ParserError("Maximum element count exceeded")
        parent = self.currElem
        if parent is not None:
            parent.children.append(element)
            element.parent = parent
        self.currElem = element


def read_with_our_parser(xs: XmlStream) -> None:
    """Make ``xs`` parse with :class:`ElementStream`, now (before any byte has arrived: call it
    from ``connectionMade``) and whenever the stream is reset."""

    def initialize(*_: Any) -> None:
        stream = ElementStream()
        stream.DocumentStartEvent = xs.onDocumentStart
        stream.ElementEvent = xs.onElement
        stream.DocumentEndEvent = xs.onDocumentEnd
        xs.stream = stream

    initialize()
    xs._initializeStream = initialize  # type: ignore[method-assign]
