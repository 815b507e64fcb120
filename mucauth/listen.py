"""A web site on ``interface:port`` as a service of the tree twistd runs: what ``/metrics`` and the
admin API share."""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TCPServer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger
from twisted.web.server import Site

__all__ = ["SiteServer"]


class SiteServer(TCPServer):
    log = Logger()

    def __init__(
        self,
        site: Site,
        port: int,
        interface: str,
        section: str,
        reactor: Any = None,
        *,
        exit_on_listen_error: bool = False,
        path: str = "/",
    ) -> None:
        """``exit_on_listen_error`` is for twistd's mucauth: a port already taken stops start-up
        with one line naming ``[section] port``, like a config mistake, not a traceback.
        Embedders get the CannotListenError. ``path`` goes into the line that says where it
        serves."""
        self.exit_on_listen_error = exit_on_listen_error
        self._section = section
        self._path = path
        self._where = f"{interface}:{port}"
        kwargs: dict[str, Any] = {"interface": interface}
        if reactor is not None:
            kwargs["reactor"] = reactor
        super().__init__(port, site, **kwargs)
        self.setName(section)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            if not self.exit_on_listen_error:
                raise
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise SystemExit(
                f"mucauth: [{self._section}] port: cannot listen on {self._where}: {reason}"
            ) from None

    def startService(self) -> None:
        super().startService()
        address = self.address()
        self.log.info(
            "{section}: serving http://{host}:{port}{path}",
            section=self._section,
            host=getattr(address, "host", None),
            port=getattr(address, "port", None),
            path=self._path,
        )

    def address(self) -> IAddress | None:
        """Where it listens once started (with port 0, the port the system picked).

        TCPServer keeps its listening port in ``_port`` and offers no public way to it.
        """
        port = getattr(self, "_port", None)
        return None if port is None else port.getHost()
