"""twistd mucauth: options, the service tree, shutdown order, log settings, and the real command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.application.service import Application, IService
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import ILogObserver, LogLevel, capturedLogs, formatEvent
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase
from wokkel.component import Component
from wokkel.generic import parseXml
from wokkel.test import helpers
from zope.interface import implementer

from mucauth import tap
from mucauth.authorize.base import Decision, IJoinAuthorizer, JoinRequest, StaticAuthorizer
from mucauth.authorize.gate import Gate
from mucauth.config import load_settings
from mucauth.link import ComponentLink
from mucauth.log_setup import LogDestinationError, make_log_observer, twistd_json_file
from mucauth.muc.service import MUCService
from mucauth.settings import ErrorCondition, LogSettings, MetricsSettings, Settings
from mucauth.slots import PROBE_ID
from mucauth.store import MemoryRoomStore, StoreError
from mucauth.tap import SHUTDOWN_GRACE, MucauthService, Options, make_service, makeService
from tests.muc.support import error_of, presence
from tests.support.ports import free_port
from tests.support.prosody import ProsodyServer
from tests.support.signals import default_ctrl_c

TWISTD = str(Path(sys.executable).parent / "twistd")
SECRET = "tap-S3CRET-never-shown"

CONFIG = f"""\
[component]
jid = rooms.localhost
port = {{port}}
secret = {SECRET}
reconnect_max_delay = 7

[muc_http_auth]
url = http://127.0.0.1:1/muc/join
deny_condition = auth/not-authorized
show_reason = true
cache_ttl = 2

[muc]
history_size = 3
"""


def temp_dir(test: SynchronousTestCase) -> Path:
    path = Path(tempfile.mkdtemp(prefix="mucauth-tap-"))
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def write_config(test: SynchronousTestCase, text: str, name: str = "tap.conf") -> Path:
    """The room store goes beside the file, not into the working directory."""
    path = temp_dir(test) / name
    if "[storage]" not in text:
        text += f"\n[storage]\npath = {path.parent / 'rooms.sqlite'}\n"
    path.write_text(text)
    return path


def settings(test: SynchronousTestCase, port: int = 5347) -> Settings:
    return load_settings(str(write_config(test, CONFIG.format(port=port))))


class OptionsTests(SynchronousTestCase):
    def test_loads_the_named_file(self) -> None:
        path = write_config(self, CONFIG.format(port=5347))
        options = Options()
        options.parseOptions(["--config", str(path)])
        self.assertEqual(options["settings"].component.port, 5347)
        options = Options()
        options.parseOptions(["-c", str(path)])
        self.assertEqual(options["settings"].http_auth.cache_ttl, 2.0)

    def test_default_file_is_tap_conf(self) -> None:
        self.assertEqual(Options()["config"], "tap.conf")

    def test_config_error_exits_with_one_line(self) -> None:
        path = write_config(self, CONFIG.format(port="x"))
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--config", str(path)])
        self.assertEqual(
            caught.exception.code, f"mucauth: {path}: [component] port: not an integer: 'x'"
        )


class ServiceTreeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.service = make_service(settings(self), reactor=self.clock)

    def test_top_service(self) -> None:
        self.assertIsInstance(self.service, MucauthService)
        self.assertTrue(IService.providedBy(self.service))
        self.assertEqual(self.service.name, "mucauth")

    def test_component_link(self) -> None:
        link = self.service.getServiceNamed("component")
        self.assertIsInstance(link, ComponentLink)
        self.assertIsInstance(link, Component)
        self.assertEqual((link.host, link.port), ("127.0.0.1", 5347))
        self.assertEqual(link.factory.maxDelay, 7)
        self.assertEqual(link.factory.authenticator.otherHost, "rooms.localhost")
        self.assertEqual(link.factory.authenticator.password, SECRET)

    def test_muc_service_is_a_handler_on_the_link(self) -> None:
        muc = self.service.muc
        self.assertIsInstance(muc, MUCService)
        self.assertIn(muc, list(self.service.link))
        self.assertEqual(muc.settings.rooms.history_length, 3)
        self.assertEqual(muc.deny_condition, ErrorCondition("auth", "not-authorized"))
        self.assertEqual(muc.failure_condition, ErrorCondition("wait", "service-unavailable"))
        self.assertTrue(muc.show_reason)
        self.assertFalse(muc.authorize_registration)

    def test_gate(self) -> None:
        self.assertIsInstance(self.service.gate, Gate)
        self.assertIs(self.service.muc.authorizer, self.service.gate)
        self.assertIs(self.service.authorizer, self.service.gate)
        assert self.service.gate is not None
        self.assertIsNotNone(self.service.gate.cache)

    def test_makeService_from_options(self) -> None:
        options = Options()
        options.parseOptions(["--config", str(write_config(self, CONFIG.format(port=5347)))])
        service = makeService(options)
        self.assertIsInstance(service, MucauthService)
        self.assertEqual(service.name, "mucauth")


class ShutdownTests(SynchronousTestCase):
    def test_occupants_are_told_then_the_link_store_and_pool_close(self) -> None:
        clock = task.Clock()
        store = MemoryRoomStore()
        service = make_service(settings(self), reactor=clock, store=store)
        calls: list[str] = []

        def record(name: str) -> Callable[[], Deferred[None]]:
            def call() -> Deferred[None]:
                calls.append(name)
                return succeed(None)

            return call

        self.patch(service.muc, "shutdown", lambda: calls.append("muc.shutdown"))
        self.patch(service.link, "startService", record("link.start"))
        self.patch(service.link, "stopService", record("link.stop"))
        self.patch(store, "open", record("store.open"))
        self.patch(store, "close", record("store.close"))
        self.patch(service.gate, "close", record("gate.close"))
        service.startService()
        self.assertEqual(calls, ["store.open", "link.start"])
        del calls[:]
        stopped = service.stopService()
        self.assertEqual(calls, ["muc.shutdown"])
        self.assertNoResult(stopped)
        # The 332 presences get a moment to leave before the link closes; the store's last
        # writes go after the link, the HTTP pool last.
        clock.advance(SHUTDOWN_GRACE)
        self.successResultOf(stopped)
        self.assertEqual(calls, ["muc.shutdown", "link.stop", "store.close", "gate.close"])

    def test_the_link_waits_for_the_store(self) -> None:
        store = MemoryRoomStore()
        service = make_service(settings(self), reactor=task.Clock(), store=store)
        opening: Deferred[None] = Deferred()
        started: list[bool] = []
        self.patch(store, "open", lambda: opening)
        self.patch(service.link, "startService", lambda: started.append(True))
        service.startService()
        self.assertEqual(started, [])
        opening.callback(None)
        self.assertEqual(started, [True])

    def test_a_store_that_cannot_open_leaves_the_link_down(self) -> None:
        store = MemoryRoomStore()
        service = make_service(settings(self), reactor=task.Clock(), store=store)
        started: list[bool] = []
        self.patch(store, "open", lambda: fail(StoreError("cannot open the room store x: gone")))
        self.patch(service.link, "startService", lambda: started.append(True))
        with capturedLogs() as events:
            service.startService()
        self.assertEqual(started, [])
        [event] = [e for e in events if e.get("mucauth_event") == "store_unavailable"]
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertIn("cannot open the room store x: gone", formatEvent(event))

    def test_a_failing_step_does_not_block_the_rest(self) -> None:
        clock = task.Clock()
        service = make_service(settings(self), reactor=clock)
        closed: list[bool] = []

        def broken() -> None:
            raise RuntimeError("boom")

        def close_gate() -> Deferred[None]:
            closed.append(True)
            return succeed(None)

        self.patch(service.muc, "shutdown", broken)
        self.patch(service.gate, "close", close_gate)
        stopped = service.stopService()
        clock.advance(SHUTDOWN_GRACE)
        self.successResultOf(stopped)
        self.assertEqual(closed, [True])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


@implementer(IJoinAuthorizer)
class ClosingAuthorizer:
    """An embedder's authorizer with a pool of its own to close: admits everyone."""

    def __init__(self) -> None:
        self.requests: list[JoinRequest] = []
        self.closed = 0

    def authorize(self, request: JoinRequest) -> Deferred[Decision]:
        self.requests.append(request)
        return succeed(Decision.allow())

    def close(self) -> Deferred[None]:
        self.closed += 1
        return succeed(None)


class InjectedAuthorizerTests(SynchronousTestCase):
    """make_service(authorizer=...): an embedder's rule instead of the HTTP gate, and the rest
    (shutdown notices, metrics, closing) as usual."""

    def make(self, authorizer: Any, *, metrics: bool = False) -> MucauthService:
        base = settings(self)
        if metrics:
            base = replace(base, metrics=MetricsSettings(port=9464))
        self.clock = task.Clock()
        # No room store: these tests are about the authorizer, and never open one.
        return make_service(base, reactor=self.clock, authorizer=authorizer, store=None)

    def join(self, service: MucauthService, user: str, room: str) -> Any:
        """Send a join through the component link, as if it had connected; what came back."""
        stub = helpers.XmlStreamStub()
        service.link._connected(stub.xmlstream)
        service.link._authd(stub.xmlstream)
        stub.send(parseXml(presence(user, room)))
        self.clock.advance(0)  # the join queue hands checks to the authorizer in a later turn
        # Less the slot probes (mucauth.slots) the link sends as it comes up.
        return [s for s in stub.output if not (s.getAttribute("id") or "").startswith(PROBE_ID)]

    def test_the_injected_authorizer_decides_joins(self) -> None:
        service = self.make(StaticAuthorizer(frozenset({"ann@example.org"})))
        self.assertIsNone(service.gate)
        self.assertIs(service.muc.authorizer, service.authorizer)
        [refused] = self.join(service, "bob@example.org/pc", "r@rooms.localhost/bob")
        self.assertEqual(refused["type"], "error")
        self.assertEqual(error_of(refused), ("auth", "not-authorized"))
        admitted = self.join(service, "ann@example.org/pc", "r@rooms.localhost/ann")
        self.assertNotEqual(admitted, [])
        self.assertTrue(all(s.getAttribute("type") != "error" for s in admitted))

    def test_its_close_is_called_on_stop_after_the_link(self) -> None:
        authorizer = ClosingAuthorizer()
        service = self.make(authorizer)
        calls: list[str] = []

        def stop_link() -> Deferred[None]:
            calls.append(f"link.stop closed={authorizer.closed}")
            return succeed(None)

        self.patch(service.muc, "shutdown", lambda: calls.append("muc.shutdown"))
        self.patch(service.link, "stopService", stop_link)
        service.running = 1
        service.link.running = 1
        stopped = service.stopService()
        self.clock.advance(SHUTDOWN_GRACE)
        self.successResultOf(stopped)
        self.assertEqual(calls, ["muc.shutdown", "link.stop closed=0"])
        self.assertEqual(authorizer.closed, 1)

    def test_an_authorizer_without_close_stops_cleanly(self) -> None:
        service = self.make(StaticAuthorizer(frozenset()))
        stopped = service.stopService()
        self.clock.advance(SHUTDOWN_GRACE)
        self.successResultOf(stopped)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_metrics_still_scrape(self) -> None:
        from prometheus_client import generate_latest

        authorizer = ClosingAuthorizer()
        service = self.make(authorizer, metrics=True)
        metrics = service.metrics
        assert metrics is not None
        self.join(service, "ann@example.org/pc", "r@rooms.localhost/ann")
        self.assertEqual(len(authorizer.requests), 1)
        registry = metrics.registry
        scrape = generate_latest(registry).decode("utf-8")
        self.assertIn("mucauth_join_decisions_total", scrape)
        allowed = [
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "mucauth_join_decisions_total"
            and sample.labels.get("outcome") == "allow"
        ]
        self.assertEqual(sum(allowed), 1)
        self.assertEqual(registry.get_sample_value("mucauth_rooms"), 1)
        self.assertEqual(registry.get_sample_value("mucauth_http_checks_in_flight"), 0)
        self.assertEqual(registry.get_sample_value("mucauth_http_connections_open"), 0)


class StartupHeapTests(SynchronousTestCase):
    """twistd's service leaves the start-up heap out of full collections; an embedder's not."""

    def start(self, service: MucauthService) -> list[str]:
        calls: list[str] = []
        self.patch(tap.gc, "collect", lambda: calls.append("collect"))
        self.patch(tap.gc, "freeze", lambda: calls.append("freeze"))
        self.patch(service.link, "startService", lambda: calls.append("link.start"))
        service.startService()
        return calls

    def test_twistd_service_freezes_the_heap_once_started(self) -> None:
        options = Options()
        options.parseOptions(["--config", str(write_config(self, CONFIG.format(port=5347)))])
        service = makeService(options)
        assert isinstance(service, MucauthService)
        assert service.store is not None
        self.patch(service.store, "open", lambda: succeed(None))  # the reactor does not run
        self.assertEqual(self.start(service), ["link.start", "collect", "freeze"])

    def test_embedded_service_leaves_the_collector_alone(self) -> None:
        service = make_service(settings(self), reactor=task.Clock(), store=MemoryRoomStore())
        self.assertEqual(self.start(service), ["link.start"])


class LogSetupTests(SynchronousTestCase):
    def observe(self, settings: LogSettings) -> tuple[Any, list[dict[str, Any]]]:
        seen: list[dict[str, Any]] = []
        return make_log_observer(settings, cast(ILogObserver, seen.append)), seen

    def event(self, level: LogLevel) -> dict[str, Any]:
        return {"log_level": level, "log_format": "x", "log_namespace": "test"}

    def test_level_filters(self) -> None:
        observer, seen = self.observe(LogSettings(level="warn"))
        for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error):
            observer(self.event(level))
        self.assertEqual([e["log_level"] for e in seen], [LogLevel.warn, LogLevel.error])

    def test_debug_shows_everything(self) -> None:
        observer, seen = self.observe(LogSettings(level="debug"))
        observer(self.event(LogLevel.debug))
        self.assertEqual(len(seen), 1)

    def test_json_goes_to_stdout_one_object_per_line(self) -> None:
        import io
        import json

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer, seen = self.observe(LogSettings(format="json"))
        observer({**self.event(LogLevel.info), "log_format": "hello {who}", "who": "you"})
        self.assertEqual(seen, [])
        [line] = out.getvalue().splitlines()
        self.assertEqual(json.loads(line)["who"], "you")

    def test_json_goes_where_twistd_would_write_text(self) -> None:
        self.assertIs(twistd_json_file({"logfile": "-", "nodaemon": True}), sys.stdout)
        self.assertIs(twistd_json_file({"logfile": None, "nodaemon": True}), sys.stdout)
        self.patch(signal, "signal", lambda *args: None)  # leave this process's SIGUSR1 alone
        path = temp_dir(self) / "mucauth.log"
        log_file = twistd_json_file({"logfile": str(path), "nodaemon": True})
        self.addCleanup(log_file.close)
        self.assertIsInstance(log_file, LogFile)
        self.assertEqual(cast(LogFile, log_file).path, str(path))

    def test_json_cannot_go_to_syslog(self) -> None:
        with self.assertRaises(LogDestinationError) as caught:
            twistd_json_file({"syslog": True, "nodaemon": True})
        self.assertIn("[log] format: json cannot go to --syslog", str(caught.exception))

    def test_observer_becomes_the_applications_log_observer(self) -> None:
        # twistd asks the application for an ILogObserver component before it starts logging.
        observer, _ = self.observe(LogSettings(level="error"))
        service = make_service(settings(self), reactor=task.Clock(), log_observer=observer)
        application = Application("mucauth")
        service.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)

    def test_an_explicit_observer_is_kept(self) -> None:
        observer, _ = self.observe(LogSettings())
        other, _ = self.observe(LogSettings())
        application = Application("mucauth")
        application.setComponent(ILogObserver, other)
        service = make_service(settings(self), reactor=task.Clock(), log_observer=observer)
        service.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), other)


def run_twistd(
    config: Path, cwd: Path, *extra: str, timeout: float = 20, before: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", *(before or []), "mucauth", "--config", str(config), *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class TwistdCommandTests(SynchronousTestCase):
    """The real ``twistd`` command, as an operator runs it."""

    def test_config_error_exits_1_with_one_line_and_no_traceback(self) -> None:
        directory = temp_dir(self)
        (directory / "tap.conf").write_text(CONFIG.format(port=70000))
        result = run_twistd(Path("tap.conf"), directory)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        self.assertNotIn(SECRET, output)
        self.assertEqual(result.stdout, "")
        self.assertEqual(
            result.stderr,
            "mucauth: tap.conf: [component] port: not a TCP port (1-65535): 70000\n",
        )
        self.assertFalse((directory / "twistd.pid").exists())

    def test_a_database_that_is_away_exits_1_with_one_line(self) -> None:
        directory = temp_dir(self)
        nobody = free_port()
        (directory / "tap.conf").write_text(
            CONFIG.format(port=5347)
            + f"\n[storage]\nurl = postgresql://mucauth:db-S3CRET@127.0.0.1:{nobody}/rooms\n"
        )
        result = run_twistd(Path("tap.conf"), directory)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        self.assertNotIn("db-S3CRET", output)
        self.assertEqual(result.stdout, "")
        [line] = result.stderr.splitlines()
        self.assertTrue(
            line.startswith(
                f"mucauth: tap.conf: [storage]: cannot open the room store"
                f" postgresql://***@127.0.0.1:{nobody}/rooms: "
            ),
            line,
        )

    def test_a_sqlite_file_that_cannot_be_made_exits_1_with_one_line(self) -> None:
        directory = temp_dir(self)
        (directory / "tap.conf").write_text(
            CONFIG.format(port=5347) + "\n[storage]\npath = no/such/dir/rooms.sqlite\n"
        )
        result = run_twistd(Path("tap.conf"), directory)
        self.assertEqual(result.returncode, 1)
        self.assertNotIn("Traceback", result.stderr)
        [line] = result.stderr.splitlines()
        self.assertIn("mucauth: tap.conf: [storage]: cannot open the room store", line)
        self.assertIn("no/such/dir/rooms.sqlite", line)

    def assert_port_in_use_exits(self, section: str, extra: str = "") -> str:
        """A ``[section] port`` already taken: exit 1, one line, no traceback, no secret."""
        directory = temp_dir(self)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            (directory / "tap.conf").write_text(
                CONFIG.format(port=5347) + f"\n[{section}]\nport = {port}\n{extra}"
            )
            result = run_twistd(Path("tap.conf"), directory)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        self.assertNotIn(SECRET, output)
        self.assertIn(
            f"mucauth: [{section}] port: cannot listen on 127.0.0.1:{port}: Address already in use",
            output,
        )
        return output

    def test_metrics_port_in_use_exits_1_with_one_line(self) -> None:
        self.assert_port_in_use_exits("metrics")

    def test_admin_api_port_in_use_exits_1_with_one_line(self) -> None:
        token = "a-token-nobody-may-see-0123"
        output = self.assert_port_in_use_exits("admin_api", f"token = {token}\n")
        self.assertNotIn(token, output)

    def test_missing_default_config(self) -> None:
        directory = temp_dir(self)
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "mucauth"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=20,
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr, "mucauth: tap.conf: cannot read: No such file or directory\n"
        )
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_json_log_goes_to_the_logfile(self) -> None:
        """With --logfile, [log] format = json writes its lines there, not to standard output."""
        directory = temp_dir(self)
        nobody = free_port()  # no XMPP server: the link logs its failed attempts
        (directory / "tap.conf").write_text(
            CONFIG.format(port=nobody) + "\n[log]\nformat = json\nlevel = info\n"
        )
        process = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "--logfile=mucauth.log",
                "mucauth",
                "--config",
                "tap.conf",
            ],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_ctrl_c,
        )
        self.addCleanup(_kill, process)
        log_path = directory / "mucauth.log"
        deadline = time.monotonic() + 15
        while "connect_failed" not in (log_path.read_text() if log_path.exists() else ""):
            if time.monotonic() > deadline or process.poll() is not None:
                self.fail("no JSON log in --logfile: " + repr(process.communicate(timeout=5)))
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
        self.assertEqual((stdout, stderr), ("", ""))
        events = [json.loads(line) for line in log_path.read_text().splitlines()]
        self.assertIn("connect_failed", {e.get("link_event") for e in events})
        self.assertNotIn(SECRET, log_path.read_text())

    def test_json_log_refuses_syslog(self) -> None:
        directory = temp_dir(self)
        (directory / "tap.conf").write_text(CONFIG.format(port=5347) + "\n[log]\nformat = json\n")
        result = run_twistd(Path("tap.conf"), directory, timeout=20, before=["--syslog"])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            "mucauth: tap.conf: [log] format: json cannot go to --syslog;"
            " use --logfile, or format = text\n",
        )

    @pytest.mark.prosody
    def test_runs_against_prosody_and_stops_cleanly(self) -> None:
        directory = temp_dir(self)
        prosody = ProsodyServer(directory / "prosody")
        prosody.start()
        self.addCleanup(prosody.stop)
        config = directory / "tap.conf"
        config.write_text(
            CONFIG.format(port=prosody.component_port).replace(
                f"secret = {SECRET}", f"secret = {prosody.component_secret}"
            )
        )
        log_path = directory / "twistd.out"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "mucauth", "--config", str(config)],
                cwd=directory,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=default_ctrl_c,
            )
        self.addCleanup(_kill, process)
        deadline = time.monotonic() + 15
        while "authenticated as rooms.localhost" not in log_path.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                self.fail("mucauth did not authenticate:\n" + log_path.read_text())
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        output = log_path.read_text()
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn(prosody.component_secret, output)


def _kill(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


if os.name != "posix":  # pragma: no cover
    del TwistdCommandTests
