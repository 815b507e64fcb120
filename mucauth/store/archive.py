"""The archive's filters and paging on records already in hand, the same for every store.

The memory store pages its lists with :func:`select_page`; the SQL store does it in SQL, but
for an ``ids`` query it fetches the few named rows and pages them here, so both agree on what
an :class:`~mucauth.store.base.ArchiveQuery` means. Positions are whatever orders the archive:
an index in a list, or the ``(ts, id)`` of a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from mucauth.store.base import ArchivePage, ArchiveQuery, HistoryRecord

__all__ = [
    "check_limit",
    "check_query",
    "is_backward",
    "lower_bound",
    "matches",
    "named_ids",
    "select_page",
    "upper_bound",
]

P = TypeVar("P", bound=Any)


def check_query(query: ArchiveQuery) -> None:
    """Refuse at the call what no store could answer."""
    if query.limit < 0:
        raise ValueError(f"limit must be 0 or more, not {query.limit}")


def check_limit(limit: int) -> None:
    """A page of rooms or messages holds at least one."""
    if limit < 1:
        raise ValueError(f"limit must be 1 or more, not {limit}")


def is_backward(query: ArchiveQuery) -> bool:
    return query.page_before is not None or query.last


def lower_bound(query: ArchiveQuery, positions: dict[str, P]) -> P | None:
    """The position the page starts after (exclusive): the later of ``after_id`` and
    ``page_after``; ``positions`` holds both (unknown ids were refused before)."""
    found = [positions[i] for i in (query.after_id, query.page_after) if i is not None]
    return max(found) if found else None


def upper_bound(query: ArchiveQuery, positions: dict[str, P]) -> P | None:
    """The position the page ends before (exclusive): the earlier of ``before_id`` and
    ``page_before``."""
    found = [positions[i] for i in (query.before_id, query.page_before) if i is not None]
    return min(found) if found else None


def named_ids(query: ArchiveQuery) -> list[str]:
    """The four id fields that must name a stored message, each once."""
    named = (query.after_id, query.before_id, query.page_after, query.page_before)
    return list(dict.fromkeys(i for i in named if i is not None))


def matches(record: HistoryRecord, query: ArchiveQuery) -> bool:
    """The filters that do not depend on positions."""
    return (
        (query.start is None or record.timestamp >= query.start)
        and (query.end is None or record.timestamp <= query.end)
        and (query.nick is None or record.nick == query.nick)
        and (query.sender is None or record.sender == query.sender)
        and (not query.ids or record.stanza_id in query.ids)
    )


def select_page(
    records: Iterable[tuple[P, HistoryRecord]],
    query: ArchiveQuery,
    positions: dict[str, P],
) -> ArchivePage:
    """The page of ``records`` (position, record), in archive order, that ``query`` asks for.

    ``positions`` maps every id of :func:`named_ids` to its position.
    """
    lower, upper = lower_bound(query, positions), upper_bound(query, positions)
    matching = [
        record
        for position, record in records
        if (lower is None or position > lower)
        and (upper is None or position < upper)
        and matches(record, query)
    ]
    limit = query.limit
    if limit == 0:
        page: list[HistoryRecord] = []
    elif is_backward(query):
        page = matching[-limit:]
    else:
        page = matching[:limit]
    return ArchivePage(tuple(page), complete=len(matching) <= limit)
