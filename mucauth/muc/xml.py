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

from collections.abc import Sequence
from typing import Any

from twisted.words.xish import domish

__all__ = ["LazyStanza", "Stanza", "escape_attribute", "escape_text", "serialize"]


def escape_text(value: str) -> str:
    """domish's ``escapeToXml(value)``.

    Most text needs no escaping, and ``str.translate`` with a table that maps a character to
    several is a dict lookup per character (~150 instructions each: 15 % of a join and its
    leave in ``bench/instructions.py``), so the text is first looked through, in C, for the
    characters that need it. ``&`` is replaced first, as domish does.
    """
    if "&" in value or "<" in value or ">" in value:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def escape_attribute(value: str) -> str:
    """domish's ``escapeToXml(value, isattrib=1)``: :func:`escape_text` plus both quotes."""
    if "&" in value or "<" in value or ">" in value or "'" in value or '"' in value:
        return (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace("'", "&apos;")
            .replace('"', "&quot;")
        )
    return value


# domish gives these a prefix whatever the default namespace (its global prefix map).
_PREFIXED = frozenset(domish.G_PREFIXES)


class _UncommonError(Exception):
    """The tree needs domish's general serializer."""


def _write(element: Any, current: str | None, prefixed: frozenset[str], out: list[str]) -> None:
    if isinstance(element, str):
        out.append(element if isinstance(element, domish.SerializedXML) else escape_text(element))
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
        out.append(f" {key}='{escape_attribute(value)}'")
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


class LazyStanza(Stanza):
    """A top-level stanza without a namespace of its own whose children are made only when
    read: the stream only ever wants the text, which :meth:`tail` writes from the parts.

    A subclass gives its ``name``, its ``shared`` children (a client's payload, passed on as
    they came) and writes what follows them in :meth:`tail`; :meth:`build` makes the same
    elements, for whoever reads ``children`` (tests do). ``owned`` names the namespaces
    :meth:`tail` writes: a stream whose default namespace, or whose prefixes, claim one of them
    gets domish's serializer, as does a shared child that needs it.
    """

    owned: frozenset[str] = frozenset()

    def __init__(
        self, name: str, attributes: dict[str, str], shared: Sequence[Any], parts: Any
    ) -> None:
        self._shared = shared
        self._parts = parts
        self._built = False
        super().__init__((None, name), attribs=attributes)

    @property  # type: ignore[override]
    def children(self) -> list[Any]:
        if not self._built:
            self._built = True
            self._children.extend(self._shared)  # shared, never mutated: no re-parenting
            self.build(self._parts)
        return self._children

    @children.setter
    def children(self, value: list[Any]) -> None:
        self._children = value

    def build(self, parts: Any) -> None:
        raise NotImplementedError

    def tail(self, parts: Any) -> str:
        raise NotImplementedError

    def toXml(
        self,
        prefixes: Any = None,
        closeElement: int = 1,  # noqa: N803  (domish's signature)
        defaultUri: str = "",  # noqa: N803
        prefixesInScope: Any = None,  # noqa: N803
    ) -> str:
        owned = self.owned
        if (
            self._built
            or closeElement != 1
            or defaultUri in owned
            or (prefixes and owned.intersection(prefixes))
        ):
            return super().toXml(prefixes, closeElement, defaultUri, prefixesInScope)
        out = [f"<{self.name}"]
        for key, value in self.attributes.items():
            out.append(f" {key}='{escape_attribute(value)}'")
        out.append(">")
        prefixed = _PREFIXED if not prefixes else _PREFIXED | frozenset(prefixes)
        try:
            for child in self._shared:
                _write(child, defaultUri, prefixed, out)
        except _UncommonError:
            return super().toXml(prefixes, closeElement, defaultUri, prefixesInScope)
        out.append(self.tail(self._parts))
        out.append(f"</{self.name}>")
        return "".join(out)
