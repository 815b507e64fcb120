"""Text from outside XMPP (the authorization service's JSON, the admin API, tap.conf), made
safe where it enters: it may end up in a stanza, which XML 1.0 restricts, and in the text log,
where a terminal would act on escape sequences.

Replaced by U+FFFD: C0 controls but tab, line feed and carriage return; DEL and the C1
controls (a terminal reads U+009B as an escape); lone surrogates (JSON's ``"\\ud800"`` parses
to one; UTF-8 cannot write it); U+FFFE and U+FFFF, which XML forbids.
"""

from __future__ import annotations

import re

__all__ = ["clean_text"]

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean_text(value: str, limit: int | None = None) -> str:
    """``value`` without what XML or a terminal must not get, at most ``limit`` characters."""
    if limit is not None:
        value = value[:limit]
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub("\ufffd", value)
