"""[log] level and format, applied to the observer twistd would have used anyway.

twistd starts logging after the plugin has built its service, and it first asks the application
for an :class:`~twisted.logger.ILogObserver` component (the hook ``.tac`` files use). mucauth's
top service sets that component when twistd attaches it to the application: the observer twistd
would have built from its own options (``--logfile``, ``--syslog``, ``-n``), or a JSON one, behind
a level filter. An explicit ``twistd --logger`` still wins.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)

from mucauth.settings import LogSettings

__all__ = ["LEVELS", "make_log_observer", "twistd_observer"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


def twistd_observer(twistd_options: Any) -> ILogObserver:
    """The observer twistd itself would make from its command line.

    twistd builds it in its logger's ``_getLogObserver``; asking for it keeps ``--logfile``,
    ``--syslog`` and daemon mode working exactly as documented for twistd. Should that private
    method ever go away, the fallback is standard output, which is what ``twistd -n`` uses.
    """
    logger_class: type[Any]
    try:
        from twisted.scripts._twistd_unix import UnixAppLogger

        logger_class = UnixAppLogger
    except ImportError:  # not on a POSIX system
        from twisted.application.app import AppLogger

        logger_class = AppLogger
    try:
        observer: ILogObserver = logger_class(twistd_options)._getLogObserver()
    except (AttributeError, KeyError, TypeError):
        observer = textFileLogObserver(sys.stdout)
    return observer


def make_log_observer(settings: LogSettings, default: ILogObserver) -> ILogObserver:
    """``default`` (text) or JSON lines on standard output, showing events at ``level`` and up.

    JSON records are one object per line, without the RFC 7464 record separator that Twisted
    writes by default, so log shippers and ``jq`` read them as JSON Lines.
    """
    base: ILogObserver
    if settings.format == "json":
        base = jsonFileLogObserver(sys.stdout, recordSeparator="")
    else:
        base = default
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[settings.level])
    return FilteringLogObserver(base, [predicate])
