"""How the hub's app is served: uvicorn, plus the one timeout uvicorn lacks.

uvicorn (0.54) times out only an idle keep-alive connection between requests. A connection that is
opened and then sends its request line and headers a byte at a time is held for as long as the client
likes, so a few thousand of them hold the server's sockets and memory (slowloris). The protocol below
closes a connection whose headers are not complete `header_timeout` seconds after the request began
(or after the connection was opened, for the first request). Bodies are bounded by size elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT = 10.0  # seconds; real clients send their headers in one packet


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (the one `uvicorn[standard]` uses) with a header-read timeout."""

    header_timeout = HEADER_TIMEOUT
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %.0f s", self.header_timeout)
            self.transport.close()


def server_config(app: Any, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT,
                  **options: Any) -> uvicorn.Config:
    """The uvicorn config every hub server uses (`omnihub run|api`, the tests' hubs)."""
    protocol = type("HubHttpProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})
    return uvicorn.Config(app, host=host, port=port, http=protocol, **options)
