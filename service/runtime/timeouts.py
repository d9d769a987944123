"""Timeouts uvicorn does not have: a client must finish a request's headers within
``TAGSERVE_HEADER_TIMEOUT_S`` of connecting (or of its previous answer) and its body within
``TAGSERVE_BODY_TIMEOUT_S`` of the headers, as nginx's ``client_header_timeout`` and
``client_body_timeout``; otherwise it gets ``408 Request Timeout`` and the connection closes.
Without them a connection that sends nothing, or trickles, is held until the open-file limit.
(The idle keep-alive timeout is uvicorn's ``timeout_keep_alive``, TAGSERVE_KEEP_ALIVE_S.)"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the two timeouts (``uvicorn.Config(http=...)``)."""

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired, what, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self, what: str, seconds: float) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                detail = f'{{"detail": "the request {what} took over {seconds:g} s"}}'.encode()
                self.transport.write(_408 % (len(detail), detail))
            self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(header_timeout_s, "headers (TAGSERVE_HEADER_TIMEOUT_S)")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # a further request on a kept-alive connection
                self._arm(header_timeout_s, "headers (TAGSERVE_HEADER_TIMEOUT_S)")

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if self.scope.get("method") in {"POST", "PUT", "PATCH"}:
                self._arm(body_timeout_s, "body (TAGSERVE_BODY_TIMEOUT_S)")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return TimedHttpToolsProtocol
