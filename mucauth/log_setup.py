"""[log] level and format, applied to the observer twistd would have used anyway.

twistd starts logging after the plugin has built its service, and it first asks the application
for an :class:`~twisted.logger.ILogObserver` component (the hook ``.tac`` files use). mucauth's
top service sets that component when twistd attaches it to the application: the observer twistd
would have built from its own options (``--logfile``, ``--syslog``, ``-n``), or a JSON one, behind
a level filter. An explicit ``twistd --logger`` still wins; JSON goes where twistd's text would
have gone (``--logfile``, or standard output).
"""

from __future__ import annotations

import signal
import sys
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

from mucauth.settings import LogSettings

__all__ = ["LEVELS", "LevelLogger", "make_log_observer", "twistd_json_file", "twistd_observer"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


class LevelLogger(Logger):
    """A ``Logger`` that drops events below ``level`` before they are built.

    The ``[log] level`` filter sits in the observer: an event below it is still built,
    published and offered to the filter before it is dropped, about 8 µs each, and a join and
    its leave emit several ``info`` and ``debug`` ones, a measurable share of the component's
    CPU per join at ``level = warn``. The hot parts (the MUC service, the HTTP gate) log
    through one of these, set to the configured level. Use it as an instance attribute: as a
    class attribute, ``Logger``'s descriptor would rebuild it without its level.
    """

    def __init__(
        self,
        namespace: str | None = None,
        source: object = None,
        observer: ILogObserver | None = None,
        *,
        level: LogLevel = LogLevel.debug,
    ) -> None:
        super().__init__(namespace, source, observer)
        self.level = level

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level >= self.level:
            super().emit(level, format, **kwargs)


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


class LogDestinationError(Exception):
    """twistd's command line asks for a log destination that [log] format cannot write to."""


def twistd_json_file(twistd_options: Any) -> IO[Any]:
    """Where twistd would write its text log, opened for JSON lines instead.

    twistd only hands out a finished text observer, not its file, so its rules are repeated
    here: ``--logfile=-`` or none with ``-n`` is standard output; a named file (``twistd.log``
    for a daemon without one) is a :class:`LogFile` that rotates on SIGUSR1, as twistd's does.
    """
    if twistd_options.get("syslog"):
        raise LogDestinationError(
            "[log] format: json cannot go to --syslog; use --logfile, or format = text"
        )
    name = twistd_options.get("logfile")
    if name == "-" or (not name and twistd_options.get("nodaemon")):
        return sys.stdout
    log_file = LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return log_file


def make_log_observer(
    settings: LogSettings,
    default: ILogObserver | None = None,
    json_file: IO[Any] | None = None,
) -> ILogObserver:
    """Text lines through ``default`` or JSON lines to ``json_file`` (each on standard output
    unless given), showing events at ``level`` and up.

    JSON records are one object per line, without the RFC 7464 record separator that Twisted
    writes by default, so log shippers and ``jq`` read them as JSON Lines.
    """
    base: ILogObserver
    if settings.format == "json":
        base = jsonFileLogObserver(json_file or sys.stdout, recordSeparator="")
    else:
        base = default or textFileLogObserver(sys.stdout)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[settings.level])
    return FilteringLogObserver(base, [predicate])
