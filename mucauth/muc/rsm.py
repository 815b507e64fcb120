"""XEP-0059 result set management for lists the service pages: the request's ``<set/>`` read
into a :class:`PageRequest`, and the answer's ``<set/>`` built.

Written here rather than taken from Wokkel: Wokkel 18.0.0, the newest release, has no RSM
module (later development versions do, unreleased).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.xish import domish

from mucauth.muc import errors

__all__ = ["NS_RSM", "PageRequest", "page_request", "result_set"]

NS_RSM = "http://jabber.org/protocol/rsm"

# Digits of <max/> or <index/> read at most: a number past this is no page anyone asks for.
_MAX_DIGITS = 9


@dataclass(frozen=True)
class PageRequest:
    """What one page asks for: at most ``limit`` items, from the start, from position
    ``index``, after the item ``after``, or the last ones before ``before`` ("" for the very
    end, XEP-0059's empty ``<before/>``)."""

    limit: int
    after: str | None = None
    before: str | None = None
    index: int | None = None


def _number(element: domish.Element, what: str) -> int:
    text = str(element).strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        raise errors.BadRequest(f"{what} is not a number of 0 or more")
    return int(text)


def page_request(element: domish.Element | None, page_size: int) -> PageRequest:
    """The page ``element`` (a ``<set/>``, or None) asks for; a ``<max/>`` above
    ``page_size`` is cut to it, and no ``<set/>`` at all is the first page of ``page_size``."""
    if element is None:
        return PageRequest(page_size)
    limit = page_size
    after = before = None
    index = None
    for each in element.elements():
        if each.uri != NS_RSM:
            continue
        if each.name == "max":
            limit = min(_number(each, "max"), page_size)
        elif each.name == "after":
            after = str(each).strip()
            if not after:
                raise errors.BadRequest("after needs an item")
        elif each.name == "before":
            before = str(each).strip()
        elif each.name == "index":
            index = _number(each, "index")
    if index is not None and (after is not None or before is not None):
        raise errors.BadRequest("Page by index, or by after and before, not both")
    return PageRequest(limit, after, before, index)


def result_set(first: str | None, first_index: int, last: str | None, count: int) -> domish.Element:
    """The answer's ``<set/>``: the page's first item (with its position in the whole list)
    and last one, when the page has any, and how many items the whole list has."""
    answer = domish.Element((NS_RSM, "set"))
    if first is not None and last is not None:
        answer.addElement("first", content=first)["index"] = str(first_index)
        answer.addElement("last", content=last)
    answer.addElement("count", content=str(count))
    return answer
