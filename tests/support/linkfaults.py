"""Breaking the component link on purpose: a loopback TCP proxy between mucauth and Prosody,
and a stack whose mucauth connects through it.

Restarting Prosody breaks the link but also every client session; with the proxy a test can
cut only the component link (clients stay connected and can find out by self-ping that their
rooms are gone), refuse reconnections for a while, and let them through again.
"""

from __future__ import annotations

import queue
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from examples._stack import MucauthProcess, component_logins, write_tap_conf
from tests.support.stack import Stack

__all__ = ["LinkFaultStack", "TCPProxy"]


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a crashed peer or a dropped NAT entry would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TCPProxy:
    """Forwards every connection on 127.0.0.1:``port`` to ``target_port``, in one thread.

    ``cut()`` resets every forwarded connection, ``refuse()`` stops listening (connections are
    refused), ``accept()`` listens again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._peers: dict[socket.socket, socket.socket] = {}
        self._commands: queue.Queue[tuple[Callable[[], None], threading.Event]] = queue.Queue()
        self._stopping = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name="link-fault-proxy", daemon=True)
        self._thread.start()

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        return listener

    # -- commands, run in the proxy's thread

    def _do(self, command: Callable[[], None]) -> None:
        done = threading.Event()
        self._commands.put((command, done))
        if not done.wait(5):
            raise RuntimeError("the proxy thread did not answer")

    def cut(self) -> int:
        """Reset every connection now; returns how many there were."""
        count: list[int] = []

        def cut() -> None:
            count.append(len(self._peers) // 2)
            for sock in list(self._peers):
                _reset(sock)
            self._peers.clear()

        self._do(cut)
        return count[0]

    def refuse(self) -> None:
        def refuse() -> None:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

        self._do(refuse)

    def accept(self) -> None:
        def accept() -> None:
            if self._listener is None:
                self._listener = self._listen(self.port)

        self._do(accept)

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._thread.join(5)
        for sock in list(self._peers):
            sock.close()
        if self._listener is not None:
            self._listener.close()

    # -- the loop

    def _run(self) -> None:
        while not self._stopping:
            while not self._commands.empty():
                command, done = self._commands.get()
                command()
                done.set()
            readable = list(self._peers)
            if self._listener is not None:
                readable.append(self._listener)
            if not readable:
                threading.Event().wait(0.02)
                continue
            ready, _, _ = select.select(readable, [], [], 0.05)
            for sock in ready:
                if sock is self._listener:
                    self._accept_one()
                elif sock in self._peers:
                    self._forward(sock)

    def _accept_one(self) -> None:
        assert self._listener is not None
        client, _ = self._listener.accept()
        self.accepted += 1
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._peers[client] = upstream
        self._peers[upstream] = client

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            try:
                peer.sendall(data)
                return
            except OSError:
                pass
        for s in (sock, peer):
            self._peers.pop(s, None)
            s.close()


class LinkFaultStack(Stack):
    """A :class:`Stack` whose mucauth reaches Prosody's component port through a
    :class:`TCPProxy`, with a short ``reconnect_max_delay`` so reconnection tests are quick."""

    def __init__(
        self,
        *args: Any,
        reconnect_max_delay: float = 2.0,
        component_secret: str | None = None,
        tap_edits: tuple[tuple[str, str], ...] = (),
        **kwargs: Any,
    ) -> None:
        """``tap_edits`` are (old, new) text replacements applied to the written tap.conf, for
        keys the shared writer has no parameter for."""
        super().__init__(*args, **kwargs)
        self.reconnect_max_delay = reconnect_max_delay
        self.tap_edits = tap_edits
        self.proxy: TCPProxy | None = None
        if component_secret is not None:
            self.prosody.component_secret = component_secret

    def start_mucauth(self) -> None:
        if self.proxy is None:
            self.proxy = TCPProxy(self.prosody.component_port)
        config = write_tap_conf(
            self.directory / "tap.conf",
            jid=self.component_domain,
            host="127.0.0.1",
            port=self.proxy.port,
            secret=self.prosody.component_secret,
            url=self.url,
            http_options=self.http_options,
            sections=self.sections,
            log_level="debug",
            writer="tests/support/linkfaults.py",
        )
        text = config.read_text().replace(
            "[muc_http_auth]",
            f"reconnect_max_delay = {self.reconnect_max_delay}\n\n[muc_http_auth]",
            1,
        )
        for old, new in self.tap_edits:
            if old not in text:
                raise ValueError(f"tap.conf has no {old!r} to replace")
            text = text.replace(old, new, 1)
        config.write_text(text)
        self.mucauth = MucauthProcess(self.directory, config)
        logins = self.component_logins()
        self.mucauth.start(lambda: self.component_logins() > logins)
        self.pids.append(self.mucauth.process.pid)  # type: ignore[union-attr]

    def component_logins(self) -> int:
        return component_logins(self.prosody.log_text())

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.proxy is not None:
                self.proxy.stop()
