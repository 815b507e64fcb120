"""What a client's stanza may hold, so that nothing the service builds from it outgrows the
server's stanza limit ([limits] in tap.conf, ``LimitSettings``).

A message is written again for every occupant, a presence for every viewer, with the room's
addresses and ids around the client's payload; escaping grows text on the way (``'`` in an
attribute becomes six bytes). The server closes a component link that sends one stanza over
its limit, which empties every room: so a payload is measured as the service would write it,
and refused on the way in when too large or too deeply nested.

Checked once per stanza, before it is routed (``service.py``); the subject, the room's name
and description have lengths of their own (``messages.py``, ``owner.py``).
"""

from __future__ import annotations

from typing import Any

from twisted.words.xish import domish

from mucauth.muc import errors
from mucauth.muc.xml import serialize
from mucauth.settings import LimitSettings

__all__ = ["check_payload", "check_text_length", "strip_payload"]

# The most bytes one character can take as the service writes it: "'" in an attribute value is
# "&apos;"; a character outside ASCII is never escaped and takes at most 4 bytes in UTF-8.
_WORST_GROWTH = 6
# Bytes an element or attribute adds beyond its strings: brackets, quotes, a namespace
# declaration's "xmlns:p=''", a closing tag's name (counted again below).
_ELEMENT_OVERHEAD = 32
_ATTRIBUTE_OVERHEAD = 24
# Top-level attributes the service parses itself and bounds (RFC 7622 JID lengths).
_ADDRESSES = frozenset({"from", "to"})


def check_payload(stanza: domish.Element, limits: LimitSettings) -> None:
    """Raise ``errors.TooLarge`` when ``stanza``'s children and attributes are nested deeper
    than ``limits.max_depth`` or would take more than ``limits.max_payload_size`` bytes as
    the service writes them.

    The walk is iterative (a stanza nested thousands deep must not reach the recursion limit)
    and cheap: it counts an upper bound, and only a stanza whose bound is over the limit is
    serialized to learn its real size.
    """
    max_depth = limits.max_depth
    budget = limits.max_payload_size
    bound = 0
    for key, value in stanza.attributes.items():
        if key not in _ADDRESSES:
            bound += _ATTRIBUTE_OVERHEAD + _WORST_GROWTH * (len(value) + _key_length(key))
    # (In the loop below, _key_length is written out: it runs for every attribute of every
    # stanza, and the call was a tenth of this function's cost.)
    level = stanza.children
    depth = 0
    while level:  # one level of the tree at a time: no recursion, no per-node tuples
        depth += 1
        if depth > max_depth:
            raise errors.TooLarge(f"The stanza is nested more than {max_depth} levels deep")
        below: list[Any] = []
        for node in level:
            if isinstance(node, str):
                bound += _WORST_GROWTH * len(node)
                continue
            bound += _ELEMENT_OVERHEAD + 2 * len(node.name) + _WORST_GROWTH * len(node.uri or "")
            attributes = node.attributes
            if attributes:
                for key, value in attributes.items():
                    size = len(key) if key.__class__ is str else len(key[0] or "") + len(key[1])
                    bound += _ATTRIBUTE_OVERHEAD + _WORST_GROWTH * (len(value) + size)
            if node.children:
                below.extend(node.children)
        level = below
    if bound <= budget:
        return
    size = _written_size(stanza)
    if size > budget:
        raise errors.TooLarge(f"The stanza is too large ({size} bytes; at most {budget})")


def _key_length(key: str | tuple[str, str]) -> int:
    if isinstance(key, tuple):
        return len(key[0] or "") + len(key[1])
    return len(key)


def _written_size(stanza: domish.Element) -> int:
    """Bytes of ``stanza``'s payload as the service writes it (its attributes, the addresses
    aside, then its children); whatever the service cannot write at all counts as too large."""
    shell = domish.Element((None, stanza.name))
    shell.attributes = {k: v for k, v in stanza.attributes.items() if k not in _ADDRESSES}
    shell.children = list(stanza.children)
    try:
        return len(serialize(shell, stanza.uri or "").encode("utf-8"))
    except Exception as e:  # unwritable: the way out would refuse every copy of it
        raise errors.TooLarge("The stanza holds what cannot be written as XML") from e


def strip_payload(stanza: domish.Element) -> None:
    """Keep a stanza that must still be acted on (a leave) without what it carried."""
    stanza.children = []


def check_text_length(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise errors.TooLarge(f"The {what} is too long ({len(text)} characters; at most {limit})")
