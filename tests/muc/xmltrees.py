"""Trees as they were meant, and as a strict parser reads the text back: what the serializer's
tests compare. expat (the parser the XMPP servers use) reads with namespace processing, so a
namespace written unescaped, an unbound prefix, a forbidden character or a duplicate attribute
is an error here as it is on the server."""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

from hypothesis import strategies as st
from twisted.words.xish import domish

from mucauth.muc.xml import XML_NS, XMLNS_NS

STREAM_NS = "jabber:component:accept"
NS_STREAMS = "http://etherx.jabber.org/streams"
STREAM_PREFIXES = {NS_STREAMS: "stream"}
STREAM_ARGS = (STREAM_PREFIXES, 1, STREAM_NS, ["stream"])
HEADER = f"<stream:stream xmlns='{STREAM_NS}' xmlns:stream='{NS_STREAMS}'>".encode()

# (namespace, name, {(namespace, name): value}, (text or tree, ...)); "" is no namespace.
Tree = tuple[str, str, dict[tuple[str, str], str], tuple[Any, ...]]


def meant(element: Any, default: str = STREAM_NS) -> Tree:
    """The tree a domish element stands for: an element without a namespace of its own is in
    the default one it inherits; plain attributes are in no namespace; adjacent texts join."""
    own_default = element.defaultUri if element.defaultUri is not None else default
    uri = element.uri if element.uri is not None else own_default
    attributes = {}
    for key, value in element.attributes.items():
        if isinstance(key, tuple):
            attributes[(key[0] or "", key[1])] = value
        else:
            attributes[("", key)] = value
    children: list[Any] = []
    for child in element.children:
        if isinstance(child, str):
            if children and isinstance(children[-1], str):
                children[-1] += child
            elif child:
                children.append(child)
        else:
            children.append(meant(child, own_default))
    return (uri, element.name, attributes, tuple(children))


# expat refuses a namespace holding its separator; XMPP servers pick one XML forbids (Prosody
# "\1"), so a namespace with a space is legal on the wire: so it is here.
SEPARATOR = "\x01"


def _split(name: str) -> tuple[str, str]:
    uri, _, local = name.rpartition(SEPARATOR)
    return uri, local


class _Reader:
    def __init__(self) -> None:
        self.stack: list[list[Any]] = [[]]
        self.depth = 0
        self.stanzas: list[Tree] = []

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            return  # the stream's header
        uri, local = _split(name)
        parsed = {_split(key): value for key, value in attributes.items()}
        self.stack.append([uri, local, parsed, []])

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.depth == 0:
            return
        uri, local, attributes, children = self.stack.pop()
        tree = (uri, local, attributes, tuple(children))
        if self.depth == 1:
            self.stanzas.append(tree)
        else:
            self.stack[-1][3].append(tree)

    def text(self, data: str) -> None:
        if self.depth < 2:
            if data.strip():
                raise AssertionError("text between stanzas")
            return
        children = self.stack[-1][3]
        if children and isinstance(children[-1], str):
            children[-1] += data
        else:
            children.append(data)


def parse_stream(data: bytes) -> list[Tree]:
    """The stanzas a stream body holds, read by expat under the component stream's header;
    raises ``expat.ExpatError`` for anything that is not namespace-well-formed XML."""
    reader = _Reader()
    parser = expat.ParserCreate("utf-8", SEPARATOR)
    parser.buffer_text = True
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    parser.Parse(HEADER + data + b"</stream:stream>", True)
    return reader.stanzas


def parse_one(data: bytes) -> Tree:
    stanzas = parse_stream(data)
    assert len(stanzas) == 1, stanzas
    return stanzas[0]


# -- trees from all of Unicode

any_char = st.characters(exclude_categories=())  # surrogates, controls, U+FFFE and all
legal_char = st.characters(
    exclude_categories=["Cs"],
    exclude_characters=[chr(c) for c in (*range(0x20), 0xFFFE, 0xFFFF) if c not in (9, 10, 13)],
)
SPECIAL = "&<>'\"\t\n\r;]"
VALID_NAMES = ["x", "body", "item", "a-b.c", "_x1", "é", "名前", "xmlns2", "stream", "xml"]
NAMESPACES = [
    "",
    STREAM_NS,
    "urn:a",
    "urn:a'b",
    'urn:a"b',
    "urn:a<b>&c",
    "urn:a\tb\nc\rd",
    XML_NS,
    XMLNS_NS,
    NS_STREAMS,
    "jabber:client",
]


def texts(char: st.SearchStrategy[str], max_size: int = 8) -> st.SearchStrategy[str]:
    return st.text(st.one_of(char, st.sampled_from(SPECIAL)), max_size=max_size)


def rarely(
    usual: st.SearchStrategy[str], odd: st.SearchStrategy[str], one_in: int = 8
) -> st.SearchStrategy[str]:
    """``odd`` one time in ``one_in``: most trees stay writable, so most examples test the
    text and not only the refusal."""
    return st.integers(1, one_in).flatmap(lambda n: odd if n == 1 else usual)


def names(char: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return rarely(st.sampled_from(VALID_NAMES), st.text(char, max_size=4), 40)


def namespaces(char: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NAMESPACES), texts(char))


@st.composite
def trees(draw: Any, depth: int = 0) -> domish.Element:
    """Any domish tree: names, namespaces, prefixes, attributes and text from all of Unicode."""
    char = rarely(legal_char, any_char, 16)
    uri = draw(st.one_of(st.none(), namespaces(char)))
    default = draw(st.one_of(st.none(), st.none(), namespaces(char)))
    element = domish.Element((uri, draw(names(char))), default)
    if draw(st.integers(0, 4)) == 0:
        element.localPrefixes = draw(
            st.dictionaries(names(char), namespaces(char), min_size=1, max_size=2)
        )
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            element[draw(names(char))] = draw(texts(char))
        else:
            key = (draw(st.one_of(st.none(), namespaces(char))), draw(names(char)))
            element[key] = draw(texts(char))
    if depth < 3:
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                element.addChild(draw(trees(depth + 1)))
            else:
                element.addContent(draw(texts(char)))
    return element


LEGAL_NAMES = VALID_NAMES
ELEMENT_NAMESPACES = [n for n in NAMESPACES if n not in (XML_NS, XMLNS_NS)]
PREFIXES = ["p", "q", "stream", "ns0", "ns2", "xn0"]


def legal_namespaces() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ELEMENT_NAMESPACES), texts(legal_char))


@st.composite
def legal_trees(draw: Any, depth: int = 0) -> domish.Element:
    """A tree any XML parser could have made (a client's payload as the server hands it over,
    or one of ours): never refused. Prefixes declared, shadowed and reused; elements in no
    namespace inside default ones; attributes in namespaces, the XML one included."""
    uri = draw(st.one_of(st.none(), legal_namespaces()))
    default = draw(st.one_of(st.none(), st.none(), legal_namespaces()))
    element = domish.Element((uri, draw(st.sampled_from(LEGAL_NAMES))), default)
    if draw(st.integers(0, 3)) == 0:
        bound = legal_namespaces().filter(bool)
        element.localPrefixes = draw(
            st.dictionaries(st.sampled_from(PREFIXES), bound, min_size=1, max_size=2)
        )
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            element[draw(st.sampled_from(LEGAL_NAMES))] = draw(texts(legal_char))
        else:
            space = draw(st.one_of(st.just(XML_NS), legal_namespaces().filter(bool)))
            element[(space, draw(st.sampled_from(LEGAL_NAMES)))] = draw(texts(legal_char))
    if depth < 3:
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                element.addChild(draw(legal_trees(depth + 1)))
            else:
                element.addContent(draw(texts(legal_char)))
    return element


def is_ncname(name: str) -> bool:
    parser = expat.ParserCreate("utf-8", " ")
    try:
        parser.Parse(f"<{name}/>".encode("utf-8", "surrogatepass"), True)
    except expat.ExpatError:
        return False
    return ":" not in name
