"""The stanza error conditions of RFC 6120 section 8.3.3, in one table.

``config.py`` checks ``deny_condition`` / ``failure_condition`` against it and fills in the type
of a bare condition from it; ``muc/stanzas.py`` checks its exception table against it. It imports
nothing, so the configuration reader does not pull in the MUC service or HTTP to use it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ERROR_TYPES", "RFC6120_CONDITIONS"]

# Every defined condition, with the type the RFC's examples use: the default for a bare one.
RFC6120_CONDITIONS: Mapping[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "modify",
    "unexpected-request": "wait",
}
ERROR_TYPES = ("auth", "cancel", "continue", "modify", "wait")
