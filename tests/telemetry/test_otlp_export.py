"""The real processes (`python -m sidecar.main`, `python -m gateway.main`) export
one complete trace per request over OTLP/gRPC to a real receiver, from both
services; and the sampler the OTEL_TRACES_SAMPLER variables choose is honoured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from x402.http.utils import decode_payment_required_header

from devnet.chain import Chain
from tests.support.payments import sign_v2
from tests.support.stack import start_facilitator

from .otlp_receiver import ReceivedSpan, otlp_receiver

ROOT = Path(__file__).resolve().parents[2]
READY_S = 60.0
STOP_S = 20.0
EXPORT_S = 20.0
SIDECAR_READY = re.compile(r"paysidecar grpc://127\.0\.0\.1:(\d+)")
GATEWAY_READY = re.compile(r"gateway (http://127\.0\.0\.1:\d+)")


def tracing_env(endpoint: str, **extra: str) -> dict[str, str]:
    """This environment without the developer's OTEL_* choices, exporting to `endpoint`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_BSP_SCHEDULE_DELAY="100",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@contextlib.asynccontextmanager
async def running(module: str, env: dict[str, str], ready: re.Pattern[str], log: Path) -> AsyncIterator[re.Match[str]]:
    """`python -m module` until its ready line; SIGTERM (then SIGKILL) on the way out."""
    with open(log, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    try:
        async with asyncio.timeout(READY_S):
            while not (match := ready.search((await process.stdout.readline()).decode())):
                if process.stdout.at_eof():
                    raise AssertionError(f"{module} exited: {log.read_text()[-2000:]}")
        yield match
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_S)
            except TimeoutError:
                process.kill()
                await process.wait()


def trace_of(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


# The paid request's trace as a viewer gets it: (service, span name), 7 spans.
PAID_TRACE = sorted(
    [
        ("paysidecar-gateway", "GET /v1/records"),
        ("paysidecar-gateway", "/paysidecar.v1.PaymentService/Authorize"),
        ("paysidecar", "/paysidecar.v1.PaymentService/Authorize"),
        ("paysidecar", "facilitator verify"),
        ("paysidecar-gateway", "/paysidecar.v1.PaymentService/Settle"),
        ("paysidecar", "/paysidecar.v1.PaymentService/Settle"),
        ("paysidecar", "facilitator settle"),
    ]
)


async def trace_id_recorded(database_url: str, request_id: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        metadata = await conn.fetchval("SELECT metadata FROM resource_call_records WHERE request_id = $1", request_id)
    finally:
        await conn.close()
    return json.loads(metadata)["trace_id"]


@pytest.mark.parametrize(
    "sampler",
    [{}, {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}],
    ids=["always_on", "ratio_0"],
)
async def test_both_processes_export_the_request_trace_over_otlp(database_url, tmp_path, sampler):
    sampled = not sampler
    facilitator = await start_facilitator(Chain(), "devnet0")
    try:
        async with otlp_receiver() as (receiver, endpoint):
            sidecar_env = tracing_env(
                endpoint,
                DATABASE_URL=database_url,
                FACILITATOR_URLS=facilitator.url,
                CHAIN_RPC_URLS=f"eip155:84532={facilitator.url}/rpc",
                PAYSIDECAR_PORT="0",
                PAYSIDECAR_SPOOL_DIR=str(tmp_path / "spool"),
                PAYSIDECAR_ENV="test",
                **sampler,
            )
            async with running("sidecar.main", sidecar_env, SIDECAR_READY, tmp_path / "sidecar.log") as sidecar:
                gateway_env = tracing_env(
                    endpoint,
                    GATEWAY_PORT="0",
                    GATEWAY_SIDECAR_TARGET=f"127.0.0.1:{sidecar.group(1)}",
                    GATEWAY_ENV="test",
                    **sampler,
                )
                async with running("gateway.main", gateway_env, GATEWAY_READY, tmp_path / "gateway.log") as gateway:
                    url = gateway.group(1) + "/v1/records"
                    async with aiohttp.ClientSession() as http:
                        async with http.get(url) as unpaid:
                            assert unpaid.status == 402
                            required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
                        async with http.get(url, headers={"PAYMENT-SIGNATURE": await sign_v2(required)}) as paid:
                            assert paid.status == 200
                            request_id = paid.headers["X-Request-ID"]
                            trace_id = paid.headers.get("x-trace-id")

                    if sampled:
                        await receiver.wait_for(
                            lambda spans: sorted((s.service, s.name) for s in trace_of(spans, trace_id)) == PAID_TRACE,
                            EXPORT_S,
                        )
            # Both processes stopped: whatever they held is exported (or dropped unsampled).
    finally:
        await facilitator.runner.cleanup()

    recorded = await trace_id_recorded(database_url, request_id)
    if not sampled:
        # Not one span of any trace, yet the record keeps the request's trace id.
        assert trace_id is None and receiver.spans == []
        assert len(recorded) == 32 and int(recorded, 16)
        return
    assert recorded == trace_id
    spans = trace_of(receiver.spans, trace_id)
    assert sorted((s.service, s.name) for s in spans) == PAID_TRACE
    assert all(s.attributes.get("request.id") == request_id for s in spans)
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if not s.parent_span_id]
    assert (root.service, root.name) == ("paysidecar-gateway", "GET /v1/records")
    assert all(s.parent_span_id in by_id for s in spans if s is not root)  # complete: no parent missing
    for server in (s for s in spans if s.service == "paysidecar" and s.name.startswith("/paysidecar.v1")):
        parent = by_id[server.parent_span_id]  # the gateway's gRPC client span, across processes
        assert (parent.service, parent.name) == ("paysidecar-gateway", server.name)
