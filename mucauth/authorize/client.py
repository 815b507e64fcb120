"""The check's treq client: treq's ``HTTPClient``, less the layers that do nothing for a check.

treq's ``HTTPClient.request`` wraps its agent anew on every request: a ``CookieAgent`` over
its jar (which parses the URI again into a fake stdlib request, ~20 % of a check's own
instructions), a ``ContentDecoderAgent`` (a copy of the headers with ``Accept-Encoding: gzip``
added, and a look at every response's ``Content-Encoding``), and a ``_Response`` wrapper. Under
:class:`~mucauth.authorize.agent.OriginAgent` with a jar that keeps nothing, the first two
change nothing: the jar never adds or keeps a cookie, the agent leaves ``Accept-Encoding``
out and never shows a ``Content-Encoding``. :meth:`CheckClient.get` therefore skips them for
the arguments the check passes, and returns what treq would have: a Deferred of treq's
``_Response`` over the agent's response, the URL converted as treq converts it. Any other use
(redirects, a buffered response, a body, params, a timeout, another jar) goes through treq's
own ``request`` unchanged.
"""

from __future__ import annotations

from typing import Any

from hyperlink import DecodedURL, EncodedURL
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from treq.response import _Response
from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers

from mucauth.authorize.agent import OriginAgent

__all__ = ["CheckClient", "NoCookies"]


class NoCookies(IndexableCookieJar):
    """A cookie jar that keeps nothing and sends nothing.

    With treq's default jar a ``Set-Cookie`` from the service would come back on every later
    check, so that one answer could change the next ones: a check must depend on its
    parameters alone.
    """

    def add_cookie_header(self, request: Any) -> None:
        return

    def extract_cookies(self, response: Any, request: Any) -> None:
        return

    def set_cookie(self, cookie: Any) -> None:
        return


class CheckClient(HTTPClient):
    """``HTTPClient(agent, cookiejar=NoCookies())`` whose ``get`` asks the agent directly."""

    def __init__(self, agent: OriginAgent) -> None:
        super().__init__(agent, cookiejar=NoCookies())
        self._origin_agent = agent

    def get(  # type: ignore[override]
        self,
        url: Any,
        *,
        headers: Any = None,
        cookies: Any = None,
        allow_redirects: bool = True,
        unbuffered: bool = False,
        reactor: Any = None,
        **kwargs: Any,
    ) -> Deferred[_Response]:
        jar = self._cookiejar
        if (
            kwargs
            or allow_redirects
            or not unbuffered
            or (cookies is not None and cookies is not jar)
            or not isinstance(headers, Headers)
        ):
            return super().get(
                url,
                headers=headers,
                cookies=cookies,
                allow_redirects=allow_redirects,
                unbuffered=unbuffered,
                reactor=reactor,
                **kwargs,
            )
        # treq's conversion of the URL, step for step (free for mucauth's _URIForm).
        if isinstance(url, DecodedURL):
            url = url.encoded_url
        elif not isinstance(url, EncodedURL):
            url = EncodedURL.from_text(url if isinstance(url, str) else url.decode("ascii"))
        uri = url.to_uri().to_text().encode("ascii")
        response = self._origin_agent.request(b"GET", uri, headers)
        return response.addCallback(_Response, jar)
