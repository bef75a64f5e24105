"""The facilitator pool: one pooled HTTP session, one HttpFacilitator and Health
per URL, candidates ordered by health (explicit per-route list > configured list).

Facilitators a caller names per route, beyond the configured ones, are kept for
the last MAX_NAMED_BY_CALLERS such URLs only: callers cannot grow the pool without
bound. One dropped and named again starts with fresh health.
"""

from __future__ import annotations

from collections import OrderedDict

import aiohttp

from ..config import Settings
from .client import HttpFacilitator
from .health import Health

MAX_NAMED_BY_CALLERS = 64


class Pool:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session
        self._by_url: dict[str, HttpFacilitator] = {}
        named_in_config = (url for route in settings.routes.values() for url in route.facilitators)
        self._configured = frozenset(url.rstrip("/") for url in (*settings.facilitator_urls, *named_in_config))
        self._named: OrderedDict[str, None] = OrderedDict()  # caller-named URLs, least recently used first
        for url in settings.facilitator_urls:
            self.get(url)

    def get(self, url: str) -> HttpFacilitator:
        url = url.rstrip("/")
        if url not in self._configured:
            self._remember_named(url)
        facilitator = self._by_url.get(url)
        if facilitator is None:
            s = self._settings
            facilitator = HttpFacilitator(
                url,
                self._session,
                Health(s.breaker_failures, s.breaker_cooldown_s, s.health_alpha),
                api_key=s.facilitator_api_keys.get(url),
                connect_timeout_s=s.connect_timeout_s,
                timeouts_s={
                    "verify": s.verify_timeout_s,
                    "settle": s.settle_timeout_s,
                    "supported": s.supported_timeout_s,
                },
            )
            self._by_url[url] = facilitator
        return facilitator

    def _remember_named(self, url: str) -> None:
        self._named[url] = None
        self._named.move_to_end(url)
        while len(self._named) > MAX_NAMED_BY_CALLERS:
            dropped, _ = self._named.popitem(last=False)
            self._by_url.pop(dropped, None)

    def candidates(self, explicit: tuple[str, ...]) -> list[HttpFacilitator]:
        return sorted(self.in_order(explicit), key=lambda f: f.health.rank())  # stable: config order breaks ties

    def in_order(self, explicit: tuple[str, ...]) -> list[HttpFacilitator]:
        return [self.get(url) for url in explicit or tuple(self._settings.facilitator_urls)]

    def all(self) -> list[HttpFacilitator]:
        return list(self._by_url.values())
