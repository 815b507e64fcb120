"""See mucauth work end to end in one command: ``./dev.sh demo``.

It starts, on 127.0.0.1 only and from a throw-away folder:

- Prosody (or ejabberd, with ``--server ejabberd``) with two users, alice and bob, and a
  component listener for rooms.localhost;
- the example authorization service (examples/auth_service.py) with examples/rules.json;
- ``twistd -n mucauth --config <generated tap.conf>``, connected to the server as rooms.localhost;

then plays a short scripted session with two real XMPP clients and prints what happens, and
keeps everything running so you can connect your own client, until Ctrl-C (or SIGTERM), which
stops every process it started. ``--no-wait`` stops right after the scripted session.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from _ejabberd import EjabberdServer
from _prosody import ProsodyServer
from _stack import (
    EXAMPLES,
    AuthService,
    MucauthProcess,
    ProcessError,
    component_logins,
    stop_process,
    tail,
    write_tap_conf,
)
from _xmpp import JoinResult, XMPPClient, XMPPTestError

DOMAIN = "localhost"
ROOMS = "rooms.localhost"
USERS = {"alice": "alice-demo", "bob": "bob-demo"}
COMPONENT_SECRET = "demo-component-secret"


def port_or_free(preferred: int) -> int:
    """The usual port when nothing uses it, so a real client needs no settings; else any."""
    for port in (preferred, 0):
        with socket.socket() as s:
            # As servers do: a port whose old connections linger in TIME_WAIT is still free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def say(text: str = "") -> None:
    print(text, flush=True)


SERVERS = {"prosody": "Prosody", "ejabberd": "ejabberd"}


class Demo:
    def __init__(self, directory: Path, server: str = "prosody") -> None:
        self.directory = directory
        self.server = server
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.auth: AuthService | None = None
        self.mucauth: MucauthProcess | None = None
        self.clients: list[XMPPClient] = []
        self.c2s_port = 0

    # -- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        name = SERVERS[self.server]
        server: ProsodyServer | EjabberdServer
        if self.server == "ejabberd":
            server = EjabberdServer(
                self.directory / "ejabberd",
                domain=DOMAIN,
                component_domain=ROOMS,
                component_secret=COMPONENT_SECRET,
                c2s_port=port_or_free(5222),
                component_port=port_or_free(5347),
                install_hint="./dev.sh demo installs it (apt).",
            )
        else:
            server = ProsodyServer(
                self.directory / "prosody",
                domain=DOMAIN,
                component_domain=ROOMS,
                component_secret=COMPONENT_SECRET,
                c2s_port=port_or_free(5222),
                component_port=port_or_free(5347),
                writer="examples/demo.py",
                install_hint="./dev.sh demo installs it (apt).",
            )
        self.c2s_port, component_port = server.c2s_port, server.component_port
        server.add_accounts(USERS)
        server.start()
        assert server.process is not None
        self.processes.append((name, server.process))
        say(f"  {name:<14} c2s 127.0.0.1:{self.c2s_port}, components 127.0.0.1:{component_port}"
            f" (pid {server.pid})")  # fmt: skip

        def logins() -> int:
            if isinstance(server, EjabberdServer):
                return server.component_logins()
            return component_logins(server.log_text())

        self.auth = AuthService(self.directory / "auth", EXAMPLES / "rules.json")
        url = self.auth.start()
        assert self.auth.process is not None
        self.processes.append(("auth service", self.auth.process))
        say(f"  auth service   {url}, rules in examples/rules.json (pid {self.auth.process.pid})")

        tap_conf = write_tap_conf(
            self.directory / "tap.conf",
            jid=ROOMS,
            host="127.0.0.1",
            port=component_port,
            secret=COMPONENT_SECRET,
            url=url,
            writer="examples/demo.py",
        )
        self.mucauth = MucauthProcess(self.directory, tap_conf)
        self.mucauth.start(lambda: logins() > 0)
        assert self.mucauth.process is not None
        self.processes.append(("mucauth", self.mucauth.process))
        say(
            f"  mucauth        twistd -n mucauth --config {tap_conf}"
            f" (pid {self.mucauth.process.pid})"
        )
        say(f"                 connected to {name} as {ROOMS}; log: {self.mucauth.log_path}")
        users = ", ".join(f"{u}@{DOMAIN} (password {p})" for u, p in USERS.items())
        say(f"  users          {users}")

    def stop(self) -> None:
        for client in self.clients:
            try:
                client.disconnect()
            except Exception:  # stopping anyway
                pass
        for what, process in reversed(self.processes):
            stop_process(process)
            say(f"  stopped {what} (pid {process.pid})")
        self.processes.clear()

    def dead(self) -> list[str]:
        """The processes that exited by themselves."""
        return [what for what, process in self.processes if process.poll() is not None]

    # -- the scripted session ----------------------------------------------------------------

    def client(self, user: str) -> XMPPClient:
        client = XMPPClient(f"{user}@{DOMAIN}", USERS[user], "127.0.0.1", self.c2s_port)
        self.clients.append(client)
        return client.connect()

    def session(self) -> None:
        lobby, staff = f"lobby@{ROOMS}", f"staff@{ROOMS}"
        alice, bob = self.client("alice"), self.client("bob")

        say(f'1. alice joins {lobby} as "alice".')
        joined = alice.join(lobby, "alice")
        self.report(joined)
        say(f"   She is the first one in: the room was created for her (status codes"
            f" {sorted(joined.status_codes)}: 110 = this is you, 201 = new room).")  # fmt: skip

        say(f'2. bob joins {lobby} as "bob".')
        joined = bob.join(lobby, "bob")
        self.report(joined)
        say(f"   Already there: {', '.join(joined.occupants) or 'nobody'}.")

        say('3. alice says "Hello bob!" in the lobby.')
        alice.send_groupchat(lobby, "Hello bob!")
        message = bob.wait_message(lobby)
        say(f"   bob receives: <{message.nick}> {message.body}")

        say(f'4. bob tries to enter {staff} as "bob".')
        refused = bob.join(staff, "bob")
        self.report(refused)
        reason = self.service_reason(staff)
        if reason:
            say(f'   The auth service said "{reason}"; mucauth logs that reason but shows the')
            say("   user a fixed sentence unless show_reason = true.")

        say(f'5. alice enters {staff} as "alice".')
        self.report(alice.join(staff, "alice"))

        say(f"6. bob leaves {lobby}.")
        bob.leave(lobby)
        gone = alice.wait_presence(f"{lobby}/bob", "unavailable")
        say(f"   alice sees {gone.nick} leave.")

        for client in self.clients:
            client.disconnect()
        self.clients.clear()

    def report(self, result: JoinResult) -> None:
        if result.ok:
            say(f"   Allowed: {result.nick} is in {result.room} ({result.elapsed * 1000:.0f} ms).")
        else:
            say(f'   Refused: {result.error_type}/{result.condition}, "{result.text}"')

    def service_reason(self, room: str) -> str:
        """The reason the auth service logged for its latest refusal for ``room``."""
        assert self.auth is not None
        pattern = re.compile(rf"room={re.escape(room)} nick=\S+ -> refused \((.*)\)$")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for line in reversed(self.auth.log_text().splitlines()):
                match = pattern.search(line)
                if match:
                    return match.group(1)
            time.sleep(0.05)
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-wait", action="store_true", help="stop everything after the scripted session"
    )
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="prosody",
        help="the XMPP server mucauth plugs into (default: prosody)",
    )
    options = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwind like Ctrl-C, so that every process gets stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    directory = Path(tempfile.mkdtemp(prefix="mucauth-demo-"))
    demo = Demo(directory, options.server)
    status = 0
    try:
        say(f"mucauth demo: everything runs on 127.0.0.1, files in {directory}")
        demo.start()
        say()
        demo.session()
        say()
        if not options.no_wait:
            say("Everything keeps running. Connect any XMPP client (plain connection, no TLS):")
            say(f"  server 127.0.0.1 port {demo.c2s_port}; users "
                + ", ".join(f"{u}@{DOMAIN} password {p}" for u, p in USERS.items()))  # fmt: skip
            say(f"  then join lobby@{ROOMS} (bob may not enter staff@{ROOMS}).")
            say("Ctrl-C stops everything.")
            while not demo.dead():
                time.sleep(0.5)
            say(f"{', '.join(demo.dead())} stopped unexpectedly; stopping the rest.")
            status = 1
    except KeyboardInterrupt:
        say()
    except (ProcessError, XMPPTestError, subprocess.CalledProcessError) as e:
        say(f"demo failed: {e}")
        if demo.mucauth is not None and demo.mucauth.log_text():
            say("mucauth's log ends with:\n" + tail(demo.mucauth.log_text()))
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("Stopping:")
        demo.stop()
        if status == 0:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            say(f"Logs kept in {directory}")
    return status


if __name__ == "__main__":
    sys.exit(main())
