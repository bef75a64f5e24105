"""Per-client token buckets: `rate` tokens a second up to `burst`; one request takes one."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import hdrs, web

from .constants import HEALTH_ROUTE, PAID_ROUTES
from .http_helpers import Handler, Middleware, json_error, request_id


class TokenBuckets:
    """Buckets by client key. The least recently seen clients are forgotten beyond
    `max_clients`; a forgotten client starts again with a full bucket."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        # client -> (tokens, time of last refill)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> int:
        """0 when the request may proceed, else the seconds to wait (Retry-After)."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        wait = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = max(1, math.ceil((1 - tokens) / self._rate))
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait


def rate_limit_middleware(paid: TokenBuckets | None, free: TokenBuckets | None) -> Middleware:
    """429 with Retry-After once a client IP has spent its bucket; paid records routes
    and everything else have separate buckets. Health probes are never limited."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name
        buckets = paid if route in PAID_ROUTES else free
        if buckets is None or route == HEALTH_ROUTE:
            return await handler(request)
        wait = buckets.take(request.remote or "unknown")
        if wait:
            return json_error(
                429,
                "rate_limited",
                f"Too many requests from this address; retry in {wait} s.",
                request_id(request),
                headers={hdrs.RETRY_AFTER: str(wait)},
            )
        return await handler(request)

    return middleware
