"""``twistd mucauth``: the command-line options and the service tree built from tap.conf.

The tree is one :class:`MucauthService` named ``mucauth`` holding the component link; the MUC
service rides on the link as a stream handler and asks the gate (scope, cache, single-flight,
HTTP) before every join, or an embedder's own authorizer, and keeps persistent rooms in the room
store built from ``[storage]``. Nothing here decides anything: it only wires settings into parts.
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet import task
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from mucauth import __version__
from mucauth.admin_api import AdminAPIServer
from mucauth.authorize.base import IJoinAuthorizer
from mucauth.authorize.gate import Gate, build_authorizer
from mucauth.config import ConfigError, load_settings
from mucauth.effective import describe_settings, redact_url
from mucauth.link import ComponentLink
from mucauth.log_setup import (
    LEVELS,
    LogDestinationError,
    make_log_observer,
    twistd_json_file,
    twistd_observer,
)
from mucauth.metrics import Metrics, MetricsServer
from mucauth.muc.service import MUCService
from mucauth.settings import Settings
from mucauth.slots import SlotProbe
from mucauth.store import IRoomStore, StoreError, build_store, prepare_database

__all__ = [
    "FROM_SETTINGS",
    "SHUTDOWN_GRACE",
    "MucauthService",
    "Options",
    "makeService",
    "make_service",
]

# Seconds between telling occupants the service is going away (status 332) and closing the link:
# enough for those presences to leave the transport's buffer on a loaded link.
SHUTDOWN_GRACE = 0.3


class _FromSettings:
    def __repr__(self) -> str:
        return "FROM_SETTINGS"


# make_service(store=FROM_SETTINGS), the default: the store [storage] describes.
FROM_SETTINGS: Any = _FromSettings()


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "An XEP-0045 Multi-User Chat service, run as an XEP-0114 external component, that lets"
        " users into a room only when an HTTP service says yes. Every setting lives in the"
        " configuration file; docs/reference/configuration.rst lists each key."
    )
    optParameters = [["config", "c", "tap.conf", "The configuration file (INI)."]]

    def postOptions(self) -> None:
        # A UsageError would make twistd dump the whole option help before the message, and
        # prefix it with its own command line. An operator wants the one line that says what is
        # wrong: SystemExit with a string prints it to stderr and exits with status 1, no
        # traceback. The file name is passed as typed so the message names it the same way.
        try:
            self["settings"] = load_settings(self["config"])
        except ConfigError as e:
            raise SystemExit(f"mucauth: {e}") from None


class MucauthService(MultiService):
    """The whole of mucauth as one Twisted service.

    Starting it opens the room store first and starts the link only once the store is open, so
    no stanza arrives before rooms can be read back. Stopping it first tells occupants the rooms
    are going away, gives those stanzas a moment to leave, then closes the component link, the
    store (after its last writes) and the authorizer (the gate's HTTP connection pool, or an
    embedder's authorizer that has a ``close()``); the Deferred it returns makes twistd wait for
    all of that before the reactor stops.
    """

    log = Logger()

    def __init__(
        self,
        settings: Settings,
        link: ComponentLink,
        muc: MUCService,
        authorizer: IJoinAuthorizer,
        *,
        clock: IReactorTime,
        log_observer: ILogObserver | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE,
        freeze_startup_heap: bool = False,
        store: IRoomStore | None = None,
        stop_on_store_error: bool = False,
    ) -> None:
        """``freeze_startup_heap``: see :meth:`startService`; for a process of our own (twistd),
        not for an embedder's, whose memory is theirs to manage. ``stop_on_store_error``: a
        store that cannot be opened stops the reactor (twistd's process) instead of leaving an
        embedder's reactor running without this service."""
        super().__init__()
        self.setName("mucauth")
        self.settings = settings
        self.link = link
        self.muc = muc
        self.authorizer = authorizer
        # The HTTP gate when mucauth built it; None for an embedder's authorizer.
        self.gate: Gate | None = authorizer if isinstance(authorizer, Gate) else None
        self.log_observer = log_observer
        self.metrics: Metrics | None = None  # set by make_service when [metrics] port is set
        self._clock = clock
        self._shutdown_grace = shutdown_grace
        self._freeze_startup_heap = freeze_startup_heap
        self.store = store
        self._stop_on_store_error = stop_on_store_error
        link.setName("component")
        link.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        # twistd logs through the application's ILogObserver component when one is set; this is
        # the only moment a plugin's service can reach the application before logging starts.
        if (
            self.log_observer is not None
            and isinstance(parent, Componentized)
            and parent.getComponent(ILogObserver, None) is None
        ):
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def startService(self) -> None:
        component = self.settings.component
        # With an embedder's authorizer, [muc_http_auth] url is not what decides: say who does.
        asking = (
            redact_url(self.settings.http_auth.url)
            if self.gate is not None
            else type(self.authorizer).__name__
        )
        self.log.info(
            "mucauth {version}: serving {jid} through {host}:{port},"
            " asking {url} before every join",
            version=__version__,
            jid=component.jid.full(),
            host=component.host,
            port=component.port,
            url=asking,
        )
        # One event, one field per tap.conf section, secrets masked: what this process runs with.
        self.log.info(
            "effective configuration: [component] {component} [muc_http_auth] {muc_http_auth}"
            " [muc] {muc} [rooms] {rooms} [archive] {archive} [log] {log} [metrics] {metrics}"
            " [storage] {storage} [admin_api] {admin_api}",
            mucauth_event="configuration",
            **describe_settings(self.settings),
        )
        if self.store is None:
            self._start_children()
        else:
            Service.startService(self)
            opened = self.store.open()
            opened.addCallbacks(lambda _: self._store_opened(), self._store_failed)

    def _start_children(self) -> None:
        super().startService()
        if self._freeze_startup_heap:
            # A full garbage collection walks every tracked object: with Twisted, Wokkel and
            # OpenSSL loaded, ~60,000 of them, 20-55 ms during which the reactor serves nobody.
            # Under join load one ran every 2-3 s and made the tail of the join latency. What
            # exists now (modules, classes, the service tree, the open store) lives as long as
            # the process, so it is moved out of the collector's sight once, after dropping any
            # garbage.
            gc.collect()
            gc.freeze()

    def _store_opened(self) -> None:
        if not self.running:  # stopped while the store was opening
            assert self.store is not None
            self.store.close()
            return
        self._start_children()

    def _store_failed(self, failure: Failure) -> None:
        # prepare_database has checked the database before twistd's reactor ran: this is a
        # database that went away in between, or an embedder's store.
        reason = failure.getErrorMessage() if failure.check(StoreError) else repr(failure.value)
        self.log.critical(
            "mucauth: the room store could not be opened, not serving: {reason}",
            reason=reason,
            mucauth_event="store_unavailable",
        )
        if self._stop_on_store_error and getattr(self._clock, "running", False):
            self._clock.stop()  # type: ignore[attr-defined]

    def stopService(self) -> Deferred[None]:
        try:
            self.muc.shutdown()
        except Exception:
            self.log.failure("telling occupants about the shutdown failed")
        stopped = task.deferLater(self._clock, self._shutdown_grace, lambda: None)
        stopped.addCallback(lambda _: self._stop_children())
        stopped.addErrback(self._log_failure, "stopping the component link failed")
        stopped.addCallback(lambda _: self._close_store())
        stopped.addErrback(self._log_failure, "closing the room store failed")
        stopped.addCallback(lambda _: self._close_authorizer())
        stopped.addErrback(self._log_failure, "closing the authorizer failed")
        return stopped

    def _stop_children(self) -> Deferred[Any] | None:
        # Also when the store never opened: a child not started stops as a no-op.
        return super().stopService()

    def _close_store(self) -> Deferred[None] | None:
        # After the link: the last writes (a subject set just before the stop) are flushed.
        return self.store.close() if self.store is not None else None

    def _close_authorizer(self) -> Deferred[Any]:
        # IJoinAuthorizer has no close(): an embedder's authorizer may own nothing to close.
        close = getattr(self.authorizer, "close", None)
        if not callable(close):
            return succeed(None)
        return maybeDeferred(close)

    def _log_failure(self, failure: Failure, why: str) -> None:
        self.log.failure(why, failure)


def make_service(
    settings: Settings,
    *,
    reactor: Any = None,
    log_observer: ILogObserver | None = None,
    freeze_startup_heap: bool = False,
    exit_on_listen_error: bool = False,
    authorizer: IJoinAuthorizer | None = None,
    store: IRoomStore | None = FROM_SETTINGS,
    stop_on_store_error: bool = False,
) -> MucauthService:
    """Build mucauth from ``settings``: for twistd (via :func:`makeService`) and for embedding.

    ``freeze_startup_heap`` and ``exit_on_listen_error`` are for a process that is mucauth alone
    (twistd): freeze the start-up heap out of the collector's way, and stop with one line when
    the metrics port is taken. ``authorizer`` is an embedder's own join rule, used instead of
    the HTTP gate built from ``[muc_http_auth]`` (whose deny/failure conditions, show_reason,
    authorize_registration and pool_size still apply): the shutdown notices, metrics and link
    stay as they are, and its ``close()``, if it has one, is called when the service stops.

    ``store``: by default the room store ``[storage]`` describes, opened when the service
    starts (call :func:`~mucauth.store.prepare_database` before, as twistd does, to stop early
    on a database that is away or behind); an embedder may pass its own
    :class:`~mucauth.store.IRoomStore`, or None to keep every room in memory only.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    # [metrics] port unset: no Metrics at all, every hook stays None.
    metrics = Metrics() if settings.metrics.port is not None else None
    if authorizer is None:
        authorizer = build_authorizer(
            settings.http_auth,
            reactor,
            on_http_check=metrics.http_check if metrics is not None else None,
            log_level=LEVELS[settings.log.level],
        )
    if store is FROM_SETTINGS:
        store = build_store(settings.storage, reactor)
    auth = settings.http_auth
    muc = MUCService(
        authorizer,
        settings.muc,
        deny_condition=settings.refusal.deny_condition,
        failure_condition=settings.refusal.failure_condition,
        show_reason=settings.refusal.show_reason,
        authorize_registration=auth.authorize_registration,
        clock=reactor,
        # No more checks in flight than the pool has connections: the rest queue fairly in
        # the MUC service, not in the HTTP client, whose timeout then counts from the send.
        max_in_flight=auth.pool_size,
        on_decision=metrics.decision if metrics is not None else None,
        on_queue_wait=metrics.queue_wait if metrics is not None else None,
        log_level=LEVELS[settings.log.level],
        store=store,
        recheck_interval=auth.recheck_interval,
        forget_answers=authorizer.forget if isinstance(authorizer, Gate) else None,
        on_removed=metrics.removed if metrics is not None else None,
    )
    link = ComponentLink(settings.component)
    muc.setHandlerParent(link)
    # Whether this link holds an ejabberd domain_balancing slot; as a standby, wait for one.
    SlotProbe(settings.component, reactor).setHandlerParent(link)
    service = MucauthService(
        settings,
        link,
        muc,
        authorizer,
        clock=reactor,
        log_observer=log_observer,
        freeze_startup_heap=freeze_startup_heap,
        store=store,
        stop_on_store_error=stop_on_store_error,
    )
    service.metrics = metrics
    if metrics is not None:
        # The HTTP gauges read the gate's internals; another authorizer reports them as zero.
        metrics.watch(muc=muc, gate=service.gate, store=store)
        metrics.link_handler().setHandlerParent(link)
        MetricsServer(
            metrics, settings.metrics, reactor, exit_on_listen_error=exit_on_listen_error
        ).setServiceParent(service)
    if settings.admin_api.port is not None:
        AdminAPIServer(
            muc,
            settings.admin_api,
            settings.component.jid.full(),
            reactor,
            exit_on_listen_error=exit_on_listen_error,
        ).setServiceParent(service)
    return service


def makeService(options: Options) -> IService:
    """twistd's entry point: the settings were loaded and checked in ``Options.postOptions``."""
    settings: Settings = options["settings"]
    twistd_options = getattr(options, "parent", None)
    observer = None
    if twistd_options is not None and settings.log.format == "json":
        # Only the JSON file: twistd's text observer would open the same --logfile again.
        try:
            json_file = twistd_json_file(twistd_options)
        except LogDestinationError as e:
            raise SystemExit(f"mucauth: {options['config']}: {e}") from None
        observer = make_log_observer(settings.log, json_file=json_file)
    elif twistd_options is not None:
        observer = make_log_observer(settings.log, twistd_observer(twistd_options))
    try:
        # Before the reactor runs: a database that is away or cannot be migrated is one line
        # and exit 1, like a configuration mistake.
        prepare_database(settings.storage)
    except StoreError as e:
        raise SystemExit(f"mucauth: {options['config']}: [storage]: {e}") from None
    return make_service(
        settings,
        log_observer=observer,
        freeze_startup_heap=True,
        exit_on_listen_error=True,
        stop_on_store_error=True,
    )
