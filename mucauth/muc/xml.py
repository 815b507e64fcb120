"""The one way out: every element the service writes is turned into text here.

Why not domish's serializer: it writes namespace URIs into ``xmlns='…'`` without escaping them
(a client's ``<x xmlns="urn:a&apos;b"/>`` reaches us as ``urn:a'b`` and goes out as
``xmlns='urn:a'b'``), gives an element in no namespace inside a default one a prefix bound to
the empty URI (which XML forbids), and passes through characters XML 1.0 forbids (controls,
U+FFFE, U+FFFF, lone surrogates). The XMPP server closes a component link that sends anything
that is not XML, which empties every room; so nothing a client controls may be written by it.

:func:`serialize` writes any domish tree itself and either returns text that a strict parser
reads back as exactly that tree, or raises :class:`Unwritable`:

- text, attribute values and namespace URIs are escaped alike; ``\\r`` in text and ``\\t``,
  ``\\n``, ``\\r`` in attribute values are written as character references, which a parser
  would otherwise normalise away;
- element and attribute names must be XML NCNames (as expat reads them); an attribute named
  ``xmlns``, an element or attribute in the ``xmlns`` namespace, a default namespace that is
  the XML or the ``xmlns`` one, and a prefix that XML does not allow to be declared are refused;
- prefixes: an element outside the default namespace and a ``(namespace, name)`` attribute get
  a prefix in scope (the stream's, such as ``stream:``, or one declared by the tree) or a
  generated one declared on the element; the XML namespace is always ``xml:``, never declared;
  an element in no namespace inside a default one is written with ``xmlns=''``.
- the whole text is checked once for the characters XML 1.0 forbids.

The common case, every stanza of a join or a message (no prefixes, plain attribute names,
text), is written by a short path (:func:`_fast`) that the join benchmark keeps cheap; names are
checked once and remembered. :class:`Stanza` is a ``domish.Element`` whose ``toXml()`` is
:func:`serialize`, and :class:`LazyStanza` writes its own parts through the same code.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any
from xml.parsers import expat

from twisted.words.xish import domish

__all__ = [
    "XMLNS_NS",
    "XML_NS",
    "LazyStanza",
    "Stanza",
    "Unwritable",
    "escape_attribute",
    "escape_text",
    "serialize",
    "serialize_bytes",
]

XML_NS = "http://www.w3.org/XML/1998/namespace"
XMLNS_NS = "http://www.w3.org/2000/xmlns/"
# Namespaces no default declaration and no generated prefix may name (Namespaces in XML §3).
_RESERVED = frozenset({XML_NS, XMLNS_NS})


class Unwritable(ValueError):  # noqa: N818  (a refusal, named as errors.py names them)
    """An element that cannot be written as XML; ``reason`` says why, never with its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def escape_text(value: str) -> str:
    """Character data as written: ``&``, ``<``, ``>`` escaped, ``\\r`` as a reference (a parser
    turns a raw one into ``\\n``).

    Most text needs none of it, and ``str.translate`` with a table that maps a character to
    several is a dict lookup per character, so the text is first looked through, in C, for the
    characters that need it (``in`` beats one regex search on the short strings of a stanza).
    ``&`` is replaced first.
    """
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        return (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace("\r", "&#13;")
        )
    return value


def escape_attribute(value: str) -> str:
    """An attribute value (or namespace URI) between single quotes: :func:`escape_text`, both
    quotes, and tab and newline as references (attribute normalisation turns them into
    spaces)."""
    if (
        "&" in value
        or "<" in value
        or ">" in value
        or "'" in value
        or '"' in value
        or "\n" in value
        or "\t" in value
        or "\r" in value
    ):
        return (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace("'", "&apos;")
            .replace('"', "&quot;")
            .replace("\t", "&#9;")
            .replace("\n", "&#10;")
            .replace("\r", "&#13;")
        )
    return value


# -- names

_NAME_START = (
    "A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NCNAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\xb7\u0300-\u036f\u203f\u2040]*\\Z")
# Names already found good; cleared when full, so a client's made-up names cannot grow it.
_NAMES: set[str] = set()
_NAMES_MAX = 4096
_NAME_CACHED_LENGTH = 64


def _expat_reads(name: str) -> bool:
    """Whether expat takes ``name`` as an element name: it is stricter than XML 1.0's fifth
    edition outside ASCII (no name characters beyond the BMP), and the XMPP server's parser is
    expat too."""
    parser = expat.ParserCreate("utf-8", " ")
    try:
        parser.Parse(f"<{name}/>".encode(), True)
    except expat.ExpatError:
        return False
    return True


def _check_name(name: Any) -> None:
    """Raises :class:`Unwritable` unless ``name`` is an NCName expat reads; remembers it."""
    if name in _NAMES:
        return
    if (
        name.__class__ is not str
        or _NCNAME.match(name) is None
        or (not name.isascii() and not _expat_reads(name))
    ):
        raise Unwritable("not an XML name")
    if len(name) <= _NAME_CACHED_LENGTH:
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES.add(name)


# -- characters

# XML 1.0's Char production leaves out C0 controls but tab, newline and carriage return,
# U+FFFE, U+FFFF and the surrogates: checked on the UTF-8 bytes, which the stream writes anyway
# (a lone surrogate does not encode; U+FFFE and U+FFFF are EF BF BE and EF BF BF).
_CONTROLS = bytes(c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D))


def _encoded(text: str) -> bytes:
    """``text`` in UTF-8, or :class:`Unwritable` if it holds a character XML 1.0 forbids.
    (Deleting the controls and comparing lengths is a table walk in C: several times cheaper
    than one regex search over the stanza.)"""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unwritable("a lone surrogate") from None
    if len(data.translate(None, _CONTROLS)) != len(data) or (
        not text.isascii() and (b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data)
    ):
        raise Unwritable("a character XML 1.0 forbids")
    return data


# -- the common case


class _Uncommon(Exception):  # noqa: N818  (not an error: a signal)
    """The tree needs the general writer (a prefix, a qualified attribute, a declaration)."""


def _fast(element: Any, current: str, out: list[str]) -> None:
    """The common case: every element in its default namespace, no declared prefixes, plain
    (or ``xml:``) attribute names. Anything else raises :class:`_Uncommon`."""
    if isinstance(element, str):
        out.append(element if isinstance(element, domish.SerializedXML) else escape_text(element))
        return
    default = element.defaultUri
    if default is None:
        default = current
    uri = element.uri
    if uri is not None and uri != default:
        raise _Uncommon
    if element.localPrefixes:
        raise _Uncommon
    name = element.name
    if name not in _NAMES:
        _check_name(name)
    if default != current:
        if default in _RESERVED:
            raise Unwritable("the default namespace bound to a reserved one")
        out.append(f"<{name} xmlns='{escape_attribute(default)}'")
    else:
        out.append("<" + name)
    for key, value in element.attributes.items():
        if key.__class__ is str:
            if key not in _NAMES or key == "xmlns":
                _check_attribute_name(key)
            out.append(f" {key}='{escape_attribute(value)}'")
        elif key[0] == XML_NS:  # xml:lang on a client's <body/>
            if key[1] not in _NAMES:
                _check_name(key[1])
            out.append(f" xml:{key[1]}='{escape_attribute(value)}'")
        else:
            raise _Uncommon
    children = element.children
    if children:
        out.append(">")
        for child in children:
            _fast(child, default, out)
        out.append(f"</{name}>")
    else:
        out.append("/>")


def _check_attribute_name(name: Any) -> None:
    if name == "xmlns":
        raise Unwritable("an attribute named xmlns")
    _check_name(name)


# -- every other case


class _General:
    """Writes any tree, keeping the prefixes in scope of the output as it goes.

    ``hints`` are the stream's wishes (namespace -> prefix, such as ``stream``): used when
    such a namespace needs a prefix and that prefix is free.
    """

    def __init__(self, hints: dict[str, str], out: list[str]) -> None:
        self.hints = hints
        self.out = out

    def element(
        self, element: Any, tree_default: str, out_default: str, scope: dict[str, str]
    ) -> None:
        """``tree_default``: what an element without a namespace of its own is in (domish's
        inherited ``defaultUri``); ``out_default``: the default namespace the text written so
        far declares (they differ below an element in no namespace inside a default one)."""
        out = self.out
        if isinstance(element, str):
            out.append(
                element if isinstance(element, domish.SerializedXML) else escape_text(element)
            )
            return
        name = element.name
        _check_name(name)
        default = element.defaultUri
        if default is None:
            default = tree_default
        if default in _RESERVED:
            raise Unwritable("the default namespace bound to a reserved one")
        uri = element.uri
        if uri is None:
            uri = default
        if uri == XMLNS_NS:
            raise Unwritable("an element in the xmlns namespace")
        declared: list[tuple[str, str]] = []
        own = scope
        for prefix, bound in element.localPrefixes.items():
            own = self._declare_local(prefix, bound, own, declared)
        # An element in no namespace can only be written unprefixed, under xmlns=''.
        here = uri if uri == "" else default
        if uri == here:
            qname = name
        else:
            prefix, own = self._prefix(uri, own, declared)
            qname = f"{prefix}:{name}"
        attributes: list[str] = []
        plain: set[str] = set()
        for key, value in element.attributes.items():
            if value.__class__ is not str:
                raise Unwritable("an attribute value that is not text")
            if key.__class__ is str:
                _check_attribute_name(key)
                plain.add(key)
                attributes.append(f" {key}='{escape_attribute(value)}'")
                continue
            attribute_uri, attribute_name = key
            _check_name(attribute_name)
            if not attribute_uri:
                if attribute_name in plain or attribute_name in element.attributes:
                    raise Unwritable("an attribute given twice")
                plain.add(attribute_name)
                attributes.append(f" {attribute_name}='{escape_attribute(value)}'")
                continue
            if attribute_uri == XMLNS_NS:
                raise Unwritable("an attribute in the xmlns namespace")
            prefix, own = self._prefix(attribute_uri, own, declared)
            attributes.append(f" {prefix}:{attribute_name}='{escape_attribute(value)}'")
        out.append("<" + qname)
        if here != out_default:
            out.append(f" xmlns='{escape_attribute(here)}'")
        for prefix, bound in declared:
            out.append(f" xmlns:{prefix}='{escape_attribute(bound)}'")
        out.extend(attributes)
        children = element.children
        if children:
            out.append(">")
            for child in children:
                self.element(child, default, here, own)
            out.append(f"</{qname}>")
        else:
            out.append("/>")

    @staticmethod
    def _declare_local(
        prefix: Any, bound: Any, scope: dict[str, str], declared: list[tuple[str, str]]
    ) -> dict[str, str]:
        """A prefix the tree declares (a parsed client payload keeps its declarations)."""
        if bound.__class__ is not str:
            raise Unwritable("a prefix bound to something that is not text")
        _check_name(prefix)
        if prefix == "xml":
            if bound != XML_NS:
                raise Unwritable("the xml prefix bound to another namespace")
            return scope
        if prefix == "xmlns" or bound in _RESERVED or bound == "":
            raise Unwritable("a prefix declaration XML does not allow")
        if scope.get(prefix) == bound:
            return scope
        scope = dict(scope)
        scope[prefix] = bound
        declared.append((prefix, bound))
        return scope

    def _prefix(
        self, uri: str, scope: dict[str, str], declared: list[tuple[str, str]]
    ) -> tuple[str, dict[str, str]]:
        """A prefix for ``uri`` in scope, declaring one on this element if none is."""
        if uri == XML_NS:
            return "xml", scope
        if uri.__class__ is not str:
            raise Unwritable("a namespace that is not text")
        hint = self.hints.get(uri)
        if hint is not None and scope.get(hint) == uri:
            return hint, scope
        for prefix, bound in scope.items():
            if bound == uri:
                return prefix, scope
        if hint is None or hint in scope or hint in ("xml", "xmlns"):
            number = len(scope)
            while f"ns{number}" in scope:
                number += 1
            hint = f"ns{number}"
        scope = dict(scope)
        scope[hint] = uri
        declared.append((hint, uri))
        return hint, scope


def _general_writer(
    prefixes: dict[str, str] | None, prefixes_in_scope: Collection[str] | None, out: list[str]
) -> tuple[_General, dict[str, str]]:
    """The writer and the scope the stream gives: ``prefixes`` (namespace -> prefix) are the
    stream's, those named in ``prefixes_in_scope`` declared on its header already."""
    scope = {"xml": XML_NS}
    hints: dict[str, str] = {}
    for uri, prefix in (prefixes or {}).items():
        if uri in _RESERVED or prefix in ("xml", "xmlns"):
            continue
        hints[uri] = prefix
        if prefixes_in_scope and prefix in prefixes_in_scope:
            scope[prefix] = uri
    return _General(hints, out), scope


def serialize_bytes(
    element: domish.Element,
    default_uri: str = "",
    prefixes: dict[str, str] | None = None,
    prefixes_in_scope: Collection[str] | None = None,
) -> bytes:
    """``element`` as UTF-8 XML, or :class:`Unwritable`. ``XmlStream.send`` passes the stream's
    namespace and its prefixes (``stream:``, declared on the stream's header)."""
    return _encoded(_text(element, default_uri, prefixes, prefixes_in_scope))


def serialize(
    element: domish.Element,
    default_uri: str = "",
    prefixes: dict[str, str] | None = None,
    prefixes_in_scope: Collection[str] | None = None,
) -> str:
    """:func:`serialize_bytes` as text."""
    text = _text(element, default_uri, prefixes, prefixes_in_scope)
    _encoded(text)
    return text


def _text(
    element: domish.Element,
    default_uri: str | None,
    prefixes: dict[str, str] | None,
    prefixes_in_scope: Collection[str] | None,
) -> str:
    if default_uri is None:
        default_uri = ""
    if default_uri in _RESERVED:
        raise Unwritable("the default namespace bound to a reserved one")
    try:
        if isinstance(element, LazyStanza) and not element._built:
            return element._text(default_uri, prefixes, prefixes_in_scope)
        out: list[str] = []
        try:
            _fast(element, default_uri, out)
        except _Uncommon:
            out = []
            writer, scope = _general_writer(prefixes, prefixes_in_scope, out)
            writer.element(element, default_uri, default_uri, scope)
        return "".join(out)
    except (TypeError, AttributeError, ValueError) as e:
        if isinstance(e, Unwritable):
            raise
        raise Unwritable("not a tree of elements and text") from None
    except RecursionError:
        raise Unwritable("nested too deeply") from None


class Stanza(domish.Element):
    """A ``domish.Element`` for the service's outgoing stanzas: ``toXml()`` is
    :func:`serialize` (which the way out uses for any element, this class or not)."""

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
    they came) and writes what follows them in :meth:`tail` (declaring the namespace of each
    element it writes, escaping every value with :func:`escape_attribute` and
    :func:`escape_text`); :meth:`build` makes the same elements, for whoever reads
    ``children`` (tests do). The shared children go through :func:`_fast`, or the general
    writer, as any tree does; the whole text is checked as :func:`serialize` checks it.
    """

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

    def _text(
        self,
        default_uri: str,
        prefixes: dict[str, str] | None,
        prefixes_in_scope: Collection[str] | None,
    ) -> str:
        name = self.name
        if name not in _NAMES:
            _check_name(name)
        out = ["<" + name]
        for key, value in self.attributes.items():
            if key not in _NAMES or key == "xmlns":
                _check_attribute_name(key)
            out.append(f" {key}='{escape_attribute(value)}'")
        out.append(">")
        for child in self._shared:
            mark = len(out)
            try:
                _fast(child, default_uri, out)
            except _Uncommon:
                del out[mark:]
                writer, scope = _general_writer(prefixes, prefixes_in_scope, out)
                writer.element(child, default_uri, default_uri, scope)
        out.append(self.tail(self._parts))
        out.append(f"</{name}>")
        return "".join(out)
