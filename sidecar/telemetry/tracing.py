"""The sidecar's tracing: the process set-up main() calls, and the stock
instrumentations the composition root (app.Sidecar) wires in.

Spans of one Authorize/Settle: gRPC server span (context from `traceparent`
metadata) → facilitator attempt spans → their HTTP client spans, and the ledger's
claim and transitions (ledger_spans.py). The tracking writer's batch spans link
back to them (batch_links.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import grpc
from opentelemetry import metrics
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.metrics import CallbackOptions, Observation

from paysidecar_common.tracing import Tracing, TracingSettings, configure

from ..facilitators.health import CLOSED, HALF_OPEN, OPEN
from ..facilitators.pool import Pool
from ..payments.ports import LedgerStore
from ..store.tracking import TrackingWriter
from .attempts import FACILITATOR_NAME
from .ledger_spans import TracedLedger
from .rpc_scope import RequestScopeInterceptor

SERVICE_NAME = "paysidecar"

BREAKER_STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class SidecarTracing:
    """What the composition root wires in when telemetry is on: gRPC server
    interceptors, the facilitator session's trace configs, the traced ledger,
    and the gauges' sources (until close())."""

    def __init__(self) -> None:
        self._writer: TrackingWriter | None = None
        self._pool: Pool | None = None
        _observed.append(self)

    def server_interceptors(self) -> tuple[grpc.aio.ServerInterceptor, ...]:
        # The stock interceptor first, so its server span is current in ours.
        return aio_server_interceptor(), RequestScopeInterceptor()

    def client_trace_configs(self) -> list[aiohttp.TraceConfig]:
        return [create_trace_config()]

    def ledger(self, store: LedgerStore) -> LedgerStore:
        return TracedLedger(store)

    def observe(self, writer: TrackingWriter, pool: Pool) -> None:
        """Report the tracking queue depth and the pool's breaker states."""
        self._writer = writer
        self._pool = pool

    def close(self) -> None:
        if self in _observed:
            _observed.remove(self)


def setup_tracing(settings: TracingSettings) -> tuple[Tracing, SidecarTracing | None]:
    """Providers from the OTEL_* settings; the instrumentation only when they export something."""
    tracing = configure(settings, SERVICE_NAME)
    return tracing, SidecarTracing() if tracing.enabled else None


# Gauges are created once per process; each reads the sidecars being observed.
_observed: list[SidecarTracing] = []


def _queue_depth(options: CallbackOptions) -> Iterator[Observation]:
    for observed in _observed:
        if observed._writer is not None:
            yield Observation(observed._writer.queue_depth)


def _breaker_states(options: CallbackOptions) -> Iterator[Observation]:
    for observed in _observed:
        for facilitator in observed._pool.all() if observed._pool is not None else ():
            state = BREAKER_STATE_VALUES[facilitator.health.current_state()]
            yield Observation(state, {FACILITATOR_NAME: facilitator.name})


_meter = metrics.get_meter(__name__)
_meter.create_observable_gauge(
    "paysidecar.tracking.queue_depth",
    callbacks=[_queue_depth],
    unit="{step}",
    description="Tracking steps recorded but not yet in the database or the spool",
)
_meter.create_observable_gauge(
    "paysidecar.facilitator.breaker_state",
    callbacks=[_breaker_states],
    unit="1",
    description="Circuit breaker per facilitator: 0 closed, 1 half-open, 2 open",
)
