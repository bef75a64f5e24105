"""The gateway's HTTP server: aiohttp's, with two changes.

A header field may be up to 17 KiB (aiohttp: 8 KiB). A payment header carries the
402's extensions back, as x402 clients echo them, and the Bazaar declaration of a
dataset is a few KiB: with it a batch-settlement deposit passes 8 KiB. The sidecar
takes payment headers up to 16 KiB and answers a larger one itself
(`header_too_large`); the parser refuses what is larger still.

A request aiohttp cannot parse (a request line over 8 KiB, a header field over
17 KiB, a malformed line) is answered by aiohttp's protocol handler before any
middleware runs: in text/plain, and logged at ERROR with a traceback. Here it
gets the JSON error shape of every other answer, with a request id, and one log
line. Server errors (5xx) keep aiohttp's handling.

aiohttp offers no supported hook for that answer: no middleware or signal runs
for a request that was never parsed, and neither `web.Server`, `AppRunner` nor
`Application(handler_args=...)` takes a protocol handler class. So this module
reaches into aiohttp's internals (`AppRunner._make_server`, `Server._loop` and
`_kwargs`, `RequestHandler.handle_error`), checked against one minor version:
pyproject.toml pins it, and tests/gateway/test_aiohttp_pin.py fails on any other.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from paysidecar_common.request_ids import REQUEST_ID_HEADER

from .errors import error_code
from .http_helpers import json_error, request_id

logger = logging.getLogger(__name__)

# The aiohttp minor version the internals used below were read and tested on.
TESTED_AIOHTTP = "3.14"
# See above: room for the sidecar's 16 KiB payment headers and a little more.
MAX_HEADER_FIELD_BYTES = 17 * 1024


class _ProtocolHandler(RequestHandler):
    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        rid = request_id(request)  # type: ignore[arg-type]  # a BaseRequest holds the id as well
        # aiohttp's message quotes the start of the offending line, which may be a
        # payment header: neither logged nor echoed, only what kind of error it was.
        kind = type(exc).__name__ if exc is not None else HTTPStatus(status).phrase
        logger.info("request %s from %s not parsed (%s), answered %d", rid, request.remote, kind, status)
        text = "The request could not be read: malformed, a request line over 8 KiB or a header field over 17 KiB."
        response = json_error(status, error_code(status), text, rid)
        response.headers[REQUEST_ID_HEADER] = rid  # no app signal runs for a request that was never parsed
        response.force_close()
        return response


class _Server(Server):
    def __call__(self) -> RequestHandler:
        return _ProtocolHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """web.AppRunner whose connections take payment headers up to the sidecar's
    limit and answer unparsable requests in JSON."""

    def __init__(self, app: web.Application, **kwargs: object) -> None:
        kwargs.setdefault("max_field_size", MAX_HEADER_FIELD_BYTES)
        super().__init__(app, **kwargs)  # type: ignore[arg-type]

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # The app builds a plain Server; _Server only changes which protocol handler
        # each connection gets, and holds nothing more.
        server.__class__ = _Server
        return server
