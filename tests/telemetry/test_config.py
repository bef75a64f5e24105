"""Tracing configuration from the standard OTEL_* variables: off unless asked
for, and a bad value stops the process at start with one clear line."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from .test_otlp_export import ROOT

RUN_S = 60.0


async def run(*args: str, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PAYSIDECAR_", "GATEWAY_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), RUN_S)
    return process.returncode, out.decode(), err.decode()


async def test_nothing_is_installed_when_no_variable_is_set():
    code, out, err = await run(
        "-c",
        "from opentelemetry import trace, metrics\n"
        "from paysidecar_common.tracing import TracingSettings, configure\n"
        "tracing = configure(TracingSettings(), 'paysidecar')\n"
        "print(tracing.enabled, type(trace.get_tracer_provider()).__name__, type(metrics.get_meter_provider()).__name__)",
    )
    assert code == 0, err
    assert out.split() == ["False", "ProxyTracerProvider", "_ProxyMeterProvider"]


@pytest.mark.parametrize("module", ["sidecar.main", "gateway.main"])
async def test_unknown_exporter_stops_the_process_with_one_line(module):
    code, _, err = await run("-m", module, OTEL_TRACES_EXPORTER="zipkin")
    assert code != 0
    (line,) = err.strip().splitlines()
    assert "OTEL_TRACES_EXPORTER" in line and "otlp" in line
