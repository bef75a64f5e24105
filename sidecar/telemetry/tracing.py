"""The sidecar's tracing: the process set-up main() calls, and what the
composition root (app.Sidecar) wires in.

Spans of one Authorize/Settle/Release (DESIGN §8): the gRPC server span (the
stock interceptor; context from `traceparent` metadata) → one client span per
facilitator attempt (attempts.py) → one span per chain read (chain_spans.py).
Everything else inside the call is an event on the server span: the domain's
steps and payment events (payments.py), the ledger's claim and transitions
(ledger_events.py), a channel's changes (channel_events.py), the tracking steps
queued and breaker changes. The tracking
writer's batch spans link back to the requests (batch_links.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from opentelemetry import metrics
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import any_of, health_check, negate, service_prefix
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from paysidecar_common.tracing import Tracing, TracingSettings, configure

from ..facilitators.health import CLOSED, HALF_OPEN, OPEN
from ..payments.ports import ChannelStore, LedgerStore
from ..status import StatusSource
from .attempts import FACILITATOR_NAME
from .channel_events import TracedChannels
from .ledger_events import TracedLedger
from .rpc_scope import RequestScopeInterceptor

SERVICE_NAME = "paysidecar"

BREAKER_STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class SidecarTracing:
    """What the composition root wires in when telemetry is on: gRPC server
    interceptors, the traced ledger and channel store, and two gauges: the
    tracking queue depth and each facilitator's breaker state.

    The gauges are the process's (an instrument name is registered once per
    meter): make one SidecarTracing per process and hand it to each Sidecar in
    turn; what it observes is the last Sidecar started, until close().
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._source: StatusSource | None = None
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(__name__)
        meter.create_observable_gauge(
            "paysidecar.tracking.queue_depth",
            callbacks=[self._queue_depth],
            unit="{step}",
            description="Tracking steps recorded but not yet in the database or the spool",
        )
        meter.create_observable_gauge(
            "paysidecar.facilitator.breaker_state",
            callbacks=[self._breaker_states],
            unit="1",
            description="Circuit breaker per facilitator: 0 closed, 1 half-open, 2 open",
        )

    def server_interceptors(self) -> tuple[grpc.aio.ServerInterceptor, ...]:
        # The stock interceptor first, so its server span is current in ours. Not
        # for health and reflection: probes, not request hops, and their streams
        # break under it (a client's health Watch would fail, and with it every call).
        untraced = any_of(health_check(), service_prefix("grpc.reflection."))
        return aio_server_interceptor(filter_=negate(untraced)), RequestScopeInterceptor()

    def ledger(self, store: LedgerStore) -> LedgerStore:
        return TracedLedger(store)

    def channels(self, store: ChannelStore) -> ChannelStore:
        return TracedChannels(store)

    def observe(self, source: StatusSource) -> None:
        """Report the tracking queue depth and the breaker states of this sidecar."""
        self._source = source

    def close(self) -> None:
        """Stop observing: the gauges report nothing until the next observe()."""
        self._source = None

    def _queue_depth(self, options: CallbackOptions) -> Iterator[Observation]:
        if self._source is not None:
            yield Observation(self._source.status().tracking.queue_depth)

    def _breaker_states(self, options: CallbackOptions) -> Iterator[Observation]:
        for facilitator in self._source.status().facilitators if self._source is not None else ():
            state = BREAKER_STATE_VALUES[facilitator.breaker_state]
            yield Observation(state, {FACILITATOR_NAME: facilitator.name})


def setup_tracing(settings: TracingSettings) -> tuple[Tracing, SidecarTracing | None]:
    """Providers from the OTEL_* settings; the instrumentation only when they export something."""
    tracing = configure(settings, SERVICE_NAME)
    return tracing, SidecarTracing(tracing.meter_provider) if tracing.enabled else None
