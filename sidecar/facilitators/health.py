"""Per-facilitator health: EWMA of latency and success, and a circuit breaker
(open after N consecutive failures, one half-open probe after a cool-down)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass
class Health:
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    alpha: float = 0.2
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    ewma_latency_ms: float = 0.0
    success_rate: float = 1.0
    consecutive_failures: int = 0
    attempts: int = 0
    state: str = CLOSED
    opened_at: float = 0.0
    probe_in_flight: bool = False

    def current_state(self) -> str:
        if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown_s:
            return HALF_OPEN
        return self.state

    def allow(self) -> bool:
        """May a request go out now? In half-open, exactly one probe at a time."""
        state = self.current_state()
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.probe_in_flight:
            self.state = HALF_OPEN
            self.probe_in_flight = True
            return True
        return False

    def record(self, success: bool, latency_ms: float) -> None:
        self.attempts += 1
        if self.attempts == 1:
            self.ewma_latency_ms = latency_ms
        else:
            self.ewma_latency_ms += self.alpha * (latency_ms - self.ewma_latency_ms)
        self.success_rate += self.alpha * ((1.0 if success else 0.0) - self.success_rate)
        self.probe_in_flight = False
        if success:
            self.consecutive_failures = 0
            self.state = CLOSED
            return
        self.consecutive_failures += 1
        if self.state == HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            self.state = OPEN
            self.opened_at = self.clock()

    def rank(self) -> tuple[int, float, int]:
        """Sort key, best first: breaker state, then success, then latency band.
        Coarse bands keep the configured order among equally healthy peers."""
        breaker = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}[self.current_state()]
        return breaker, -round(self.success_rate, 1), int(self.ewma_latency_ms // 250)
