"""Outgoing stanzas that serialize themselves quickly.

Every presence and message the service sends is turned into text by ``XmlStream.send``, which
calls ``toXml()``. domish's serializer is written for every case XML allows (prefixes, prefixed
attributes, namespaces declared on ancestors) and spent a fifth of the component's CPU per join
in the join benchmark, on stanzas that never use any of it. :class:`Stanza` is a
``domish.Element`` (code and tests read it as one) whose ``toXml()`` writes the common case
directly: elements whose namespace is their default one, plain attribute names, text. It gives
the same text as domish, character for character (``tests/muc/test_xml.py`` checks it on
random trees); a tree outside that case (a prefix, a qualified attribute) is handed to domish.
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

__all__ = ["Stanza", "escape_attribute", "serialize", "serialize_parts"]

# escapeToXml's replacements, as one C-level pass per string.
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTRIBUTE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"})
# domish gives these a prefix whatever the default namespace (its global prefix map).
_PREFIXED = frozenset(domish.G_PREFIXES)


class _UncommonError(Exception):
    """The tree needs domish's general serializer."""


def _write(element: Any, current: str | None, prefixed: frozenset[str], out: list[str]) -> None:
    if isinstance(element, str):
        out.append(
            element if isinstance(element, domish.SerializedXML) else element.translate(_TEXT)
        )
        return
    default = element.defaultUri
    if default is None:
        default = current
    uri = element.uri
    if uri is None:
        uri = default
    if uri != default or uri in prefixed or element.localPrefixes:
        raise _UncommonError
    name = element.name
    out.append("<" + name)
    if default != current:
        out.append(f" xmlns='{default}'")
    for key, value in element.attributes.items():
        if key.__class__ is not str:
            raise _UncommonError  # a (namespace, name) attribute needs a prefix
        out.append(f" {key}='{value.translate(_ATTRIBUTE)}'")
    children = element.children
    if children:
        out.append(">")
        for child in children:
            _write(child, default, prefixed, out)
        out.append(f"</{name}>")
    else:
        out.append("/>")


def serialize(
    element: domish.Element,
    default_uri: str = "",
    prefixes: dict[str, str] | None = None,
    prefixes_in_scope: list[str] | None = None,
) -> str:
    """``element.toXml(prefixes, 1, default_uri, prefixes_in_scope)``'s text, written without
    domish's general machinery when it can. ``XmlStream.send`` passes the stream's namespace
    and its prefixes (``stream:``); an element in a prefixed namespace goes to domish. (The
    prefixes in scope only decide how prefixed elements are declared: never here.)"""
    out: list[str] = []
    prefixed = _PREFIXED if not prefixes else _PREFIXED | frozenset(prefixes)
    try:
        _write(element, default_uri, prefixed, out)
    except _UncommonError:
        return domish.Element.toXml(element, prefixes, 1, default_uri, prefixes_in_scope)
    return "".join(out)


def escape_attribute(value: str) -> str:
    return value.translate(_ATTRIBUTE)


def serialize_parts(
    name: str,
    attributes: dict[str, str],
    children: Any,
    default_uri: str = "",
    prefixes: dict[str, str] | None = None,
) -> str | None:
    """The start tag and the children of a top-level element without a namespace of its own
    (a ``<presence/>`` or ``<message/>`` as the service builds them), as ``toXml`` would
    write them, left open for the caller to finish; None when a child needs domish."""
    out = [f"<{name}"]
    for key, value in attributes.items():
        out.append(f" {key}='{value.translate(_ATTRIBUTE)}'")
    out.append(">")
    prefixed = _PREFIXED if not prefixes else _PREFIXED | frozenset(prefixes)
    try:
        for child in children:
            _write(child, default_uri, prefixed, out)
    except _UncommonError:
        return None
    return "".join(out)


class Stanza(domish.Element):
    """A ``domish.Element`` for the service's outgoing stanzas: ``toXml()`` is
    :func:`serialize`. Built, like every element the service sends, and then left alone."""

    def toXml(
        self,
        prefixes: Any = None,
        closeElement: int = 1,  # noqa: N803  (domish's signature)
        defaultUri: str = "",  # noqa: N803
        prefixesInScope: Any = None,  # noqa: N803
    ) -> str:
        if closeElement == 1:
            return serialize(self, defaultUri, prefixes, prefixesInScope)
        return super().toXml(prefixes, closeElement, defaultUri, prefixesInScope)
