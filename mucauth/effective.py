"""The effective configuration as plain data, fit for one start-up log event.

An operator debugging "why is every join refused" wants to see what mucauth actually runs with:
defaults filled in, Prosody aliases folded, files read. Every value is shown except secrets:
:class:`~mucauth.settings.Secret` values become ``'***'``, and a URL keeps its scheme, host,
port and path while any userinfo or query (both can carry credentials) is replaced by ``***``.
The result is JSON-serialisable, so ``[log] format = json`` shows it as nested objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.words.protocols.jabber.jid import JID

from mucauth.settings import ErrorCondition, RoomScope, Secret, Settings

__all__ = ["MASK", "describe_settings", "mask_url", "redact_url"]

MASK = "***"

# Settings field name -> the tap.conf section it comes from.
_SECTIONS = {
    "component": "component",
    "http_auth": "muc_http_auth",
    "muc": "muc",
    "refusal": "muc_http_auth",  # its keys are written there
    "log": "log",
    "metrics": "metrics",
}
_URL_FIELDS = frozenset({"url"})


def redact_url(url: str, mask: str | None = None) -> str:
    """``url`` fit for a log: scheme, host, port and path; userinfo, query and fragment dropped.

    Either of the first two may carry a credential. With ``mask``, the userinfo and query are
    replaced by it rather than dropped, so a reader sees that there was one. An unparsable URL
    (config.py refuses those, but this must never raise while logging) is :data:`MASK` whole.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    query = ""
    if mask is not None:
        if parts.username is not None or parts.password is not None:
            netloc = f"{mask}@{netloc}"
        query = mask if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def mask_url(url: str) -> str:
    """``url`` with userinfo and query masked, for the effective configuration."""
    return redact_url(url, mask=MASK)


def _plain(value: Any, name: str = "") -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str) and name in _URL_FIELDS:
        return mask_url(value)
    if isinstance(value, JID):
        return value.full()
    if isinstance(value, ErrorCondition):
        return str(value)
    if isinstance(value, RoomScope):
        return {"mode": value.mode, "rooms": {k: sorted(v) for k, v in value.rooms.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set, list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def describe_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """One dict per tap.conf section, keyed by the section's name."""
    described: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(settings):
        described.setdefault(_SECTIONS.get(f.name, f.name), {}).update(
            _plain(getattr(settings, f.name))
        )
    # MUCSettings carries the [rooms] defaults to the service; in tap.conf they are a section.
    described["rooms"] = described["muc"].pop("rooms")
    described["archive"] = described["muc"].pop("archive")
    return described
