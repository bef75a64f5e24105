"""The facilitator pool: one pooled HTTP session, one HttpFacilitator and Health
per URL, candidates ordered by health (explicit per-route list > configured list)."""

from __future__ import annotations

import aiohttp

from ..config import Settings
from .client import HttpFacilitator
from .health import Health


class Pool:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session
        self._by_url: dict[str, HttpFacilitator] = {}
        for url in settings.facilitator_urls:
            self.get(url)

    def get(self, url: str) -> HttpFacilitator:
        url = url.rstrip("/")
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

    def candidates(self, explicit: tuple[str, ...]) -> list[HttpFacilitator]:
        urls = explicit or tuple(self._settings.facilitator_urls)
        ordered = [self.get(url) for url in urls]
        return sorted(ordered, key=lambda f: f.health.rank())  # stable: config order breaks ties

    def all(self) -> list[HttpFacilitator]:
        return list(self._by_url.values())
