"""Reading the component stream: domish's parser with a namespace separator no namespace holds.

Twisted's ``ExpatElementStream`` asks expat to report a namespaced name as ``"<uri> <local>"``,
a space between the two. Expat (2.4.5 and later) refuses a document whose namespace names hold
that separator, so ``<x xmlns='urn:a b'/>`` from any client, which XML allows and XMPP servers
pass on, failed the parser: Twisted then ends the stream, the component link drops and every
room empties. Here expat separates with U+0001, which XML 1.0 forbids in a document and hence
in any namespace name; domish's own handlers still build the elements, from names rewritten
with a space before the local name (domish splits at the last space, and a local name holds
none). Written by hand because domish offers no way to choose the separator.
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

    def _onStartElement(self, name: str, attrs: dict[str, str]) -> None:
        if _SEPARATOR in name:
            name = name.replace(_SEPARATOR, " ")
        if attrs and any(_SEPARATOR in key for key in attrs):
            attrs = {key.replace(_SEPARATOR, " "): value for key, value in attrs.items()}
        super()._onStartElement(name, attrs)


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
