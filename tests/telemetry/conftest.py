"""Tracing under test: one TracerProvider (and MeterProvider) for the whole
session, installed on first use, whose in-memory exporter keeps spans only while
a test of this package runs; and the traced stack — devnet facilitator, sidecar
and gateway in this process, instrumented as their main() would."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.config import Settings as GatewaySettings
from paysidecar_common.tracing import TracingSettings, configure
from sidecar.app import Sidecar
from sidecar.telemetry.tracing import SidecarTracing
from tests.support.net import closed_port
from tests.support.stack import DevnetFacilitator, devnet, sidecar_settings

WAIT_S = 10.0


class Capture(InMemorySpanExporter):
    """Keeps the spans that end while `active`; drops the rest, so the provider
    can stay installed for the session without hoarding other packages' spans."""

    active = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.active:
            return SpanExportResult.SUCCESS
        return super().export(spans)

    async def wait_for(self, predicate: Callable[[list[ReadableSpan]], bool], timeout_s: float = WAIT_S) -> list[ReadableSpan]:
        """The finished spans once `predicate` holds for them (some end after the
        client has its answer); TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not predicate(spans := list(self.get_finished_spans())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"spans never matched; have {sorted(s.name for s in spans)}")
            await asyncio.sleep(0.01)
        return spans


@dataclass(frozen=True)
class Telemetry:
    spans: Capture
    metrics: InMemoryMetricReader


@pytest.fixture(scope="session")
def telemetry() -> Telemetry:
    capture, reader = Capture(), InMemoryMetricReader()
    # Explicit settings: the developer's own OTEL_* variables must not change the test.
    settings = TracingSettings(sdk_disabled=False, traces_exporter=("none",), metrics_exporter=("none",))
    tracing = configure(settings, "paysidecar-tests", span_exporter=capture, metric_reader=reader)
    if trace.get_tracer_provider() is not tracing.tracer_provider:
        pytest.fail("a global TracerProvider was installed before the telemetry tests; they need their own")
    return Telemetry(capture, reader)


@pytest.fixture(scope="session")
def sidecar_tracing(telemetry: Telemetry) -> SidecarTracing:
    """One per process, as in sidecar.main: each test's sidecar is observed in turn."""
    return SidecarTracing()


@pytest.fixture
def spans(telemetry: Telemetry) -> AsyncIterator[Capture]:
    capture = telemetry.spans
    capture.clear()
    capture.active = True
    yield capture
    capture.active = False
    capture.clear()


@dataclass
class TracedStack:
    gateway_url: str
    sidecar: Sidecar
    facilitator: DevnetFacilitator
    down_url: str
    http: aiohttp.ClientSession


@pytest.fixture
def sidecar_overrides() -> dict[str, Any]:
    """Sidecar settings a test changes (parametrize this name to change them)."""
    return {}


@pytest.fixture
def facilitator_down_first() -> bool:
    """Whether the sidecar's first facilitator is one that is down (parametrize to change)."""
    return True


@pytest.fixture
async def stack(
    spans: Capture,
    sidecar_tracing: SidecarTracing,
    database_url: str,
    tmp_path: Path,
    sidecar_overrides: dict[str, Any],
    facilitator_down_first: bool,
) -> AsyncIterator[TracedStack]:
    """Gateway → sidecar → [a facilitator that is down, unless told otherwise; the
    devnet facilitator]."""
    async with devnet(count=1) as (_chain, (facilitator,)):
        down_url = f"http://127.0.0.1:{closed_port()}"
        settings = sidecar_settings(
            database_url,
            tmp_path / "spool",
            [down_url, facilitator.url] if facilitator_down_first else [facilitator.url],
            chain_rpc_urls={"eip155:84532": facilitator.url + "/rpc"},
            **sidecar_overrides,
        )
        sidecar = Sidecar(settings, tracing=sidecar_tracing)
        try:
            port = await sidecar.start()
            try:
                async with running_gateway(f"127.0.0.1:{port}") as gateway_url, aiohttp.ClientSession() as http:
                    yield TracedStack(gateway_url, sidecar, facilitator, down_url, http)
            finally:
                await sidecar.stop(grace_s=1.0)
        finally:
            sidecar_tracing.close()


@contextlib.asynccontextmanager
async def running_gateway(sidecar_target: str) -> AsyncIterator[str]:
    """The gateway on a loopback port, instrumented as gateway.main does but for
    this app only: the session's other aiohttp apps stay uninstrumented."""
    instrumentor = AioHttpServerInstrumentor()
    instrumentor.instrument()
    try:
        settings = GatewaySettings(
            port=0, sidecar_target=sidecar_target, env="test", paid_rate_per_s=0, free_rate_per_s=0
        )
        app = create_app(settings)
    finally:
        instrumentor.uninstrument()
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
