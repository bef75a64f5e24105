"""One facilitator over HTTP. Every call becomes a FacilitatorAnswer: the parsed
JSON when it is well-formed, else an outcome and a reason code — it never raises."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..payments.ports import Attempt, FacilitatorAnswer, Outcome
from ..telemetry.attempts import (
    attempt_span,
    record_attempt,
    record_breaker_change,
    record_skipped,
    with_trace_context,
)
from .health import Health

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def facilitator_name(url: str) -> str:
    """A short stable name for reason codes and metrics: host[:port][path]."""
    parts = urlsplit(url)
    name = parts.netloc + parts.path.rstrip("/")
    return name or url


def _well_formed(stage: str, status: int, data: Any) -> bool:
    """Is this the answer shape the x402 facilitator API promises?"""
    if not isinstance(data, dict):
        return False
    if stage == "verify":
        valid = data.get("isValid")
        # A 4xx is a clean answer only when it says "invalid".
        return isinstance(valid, bool) and (status < 400 or valid is False)
    if stage == "supported":
        return status < 400 and isinstance(data.get("kinds"), list)
    success = data.get("success")  # settle
    if success is True:
        tx = data.get("transaction")
        return status < 400 and isinstance(tx, str) and bool(tx)
    return success is False


class HttpFacilitator:
    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        health: Health,
        *,
        api_key: str | None = None,
        connect_timeout_s: float,
        timeouts_s: dict[str, float],
    ) -> None:
        self.url = url.rstrip("/")
        self.name = facilitator_name(self.url)
        self.health = health
        self._session = session
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect_timeout_s = connect_timeout_s
        self._timeouts_s = timeouts_s

    async def verify(self, body: dict[str, Any]) -> FacilitatorAnswer:
        return await self._call("verify", body)

    async def settle(self, body: dict[str, Any]) -> FacilitatorAnswer:
        return await self._call("settle", body)

    async def supported(self) -> FacilitatorAnswer:
        return await self._call("supported", None)

    def _answer(
        self, stage: str, outcome: Outcome, started: float, what: str = "", status: int = 0, data: Any = None
    ) -> FacilitatorAnswer:
        latency_ms = (time.perf_counter() - started) * 1000
        reason = f"{self.name}_{what}" if what else ""
        before = self.health.state
        self.health.record(outcome is Outcome.OK, latency_ms)
        self._breaker_moved(before)
        return FacilitatorAnswer(Attempt(self.name, stage, outcome, latency_ms, reason, status), data)

    def _breaker_moved(self, before: str) -> None:
        if self.health.state != before:
            record_breaker_change(self.name, before, self.health.state)

    async def _call(self, stage: str, body: dict[str, Any] | None) -> FacilitatorAnswer:
        before = self.health.state
        allowed = self.health.allow()
        self._breaker_moved(before)
        if not allowed:
            # Not an attempt on the wire, so it does not feed the health figures.
            attempt = Attempt(self.name, stage, Outcome.UNREACHABLE, 0.0, f"{self.name}_circuit_open")
            record_skipped(attempt)
            return FacilitatorAnswer(attempt, None)
        # /supported is the one GET of the facilitator API; verify and settle POST a body.
        method, url = "GET" if body is None else "POST", f"{self.url}/{stage}"
        with attempt_span(self.name, stage, method, url) as span:
            answer = await self._send(stage, method, url, body)
            record_attempt(span, answer.attempt)
        return answer

    async def _send(self, stage: str, method: str, url: str, body: dict[str, Any] | None) -> FacilitatorAnswer:
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(
            total=self._timeouts_s[stage], sock_connect=self._connect_timeout_s
        )
        try:
            async with self._session.request(
                method, url, json=body, headers=with_trace_context(self._headers), timeout=timeout
            ) as response:
                status = response.status
                raw = await response.content.read(MAX_BODY_BYTES + 1)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            return self._answer(stage, Outcome.UNREACHABLE, started, "unreachable")
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            return self._answer(stage, Outcome.TIMEOUT, started, "timeout")
        except aiohttp.ClientError as exc:
            # Reset or dropped after the request went out: it may have acted.
            log.info("facilitator %s %s connection lost: %s", self.name, stage, type(exc).__name__)
            return self._answer(stage, Outcome.TIMEOUT, started, "unreachable")

        if status >= 500 or (status >= 300 and status < 400):
            return self._answer(stage, Outcome.HTTP_ERROR, started, f"http_{status}", status)
        if len(raw) > MAX_BODY_BYTES:
            return self._answer(stage, Outcome.INVALID_RESPONSE, started, "invalid_response", status)
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            what = f"http_{status}" if status >= 400 else "invalid_json"
            outcome = Outcome.HTTP_ERROR if status >= 400 else Outcome.INVALID_JSON
            return self._answer(stage, outcome, started, what, status)
        if not _well_formed(stage, status, data):
            what = f"http_{status}" if status >= 400 else "invalid_response"
            outcome = Outcome.HTTP_ERROR if status >= 400 else Outcome.INVALID_RESPONSE
            return self._answer(stage, outcome, started, what, status)
        return self._answer(stage, Outcome.OK, started, status=status, data=data)
