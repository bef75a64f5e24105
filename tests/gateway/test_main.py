"""`python -m gateway.main` as a process: the ready line, serving, clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.net import closed_port

REPO = Path(__file__).resolve().parents[2]


async def start(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.main",
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_prints_its_url_serves_and_stops_cleanly_on_a_signal(signum):
    process = await start({"GATEWAY_PORT": "0", "GATEWAY_SIDECAR_TARGET": f"127.0.0.1:{closed_port()}"})
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        ready = re.fullmatch(r"gateway http://127\.0\.0\.1:(\d+)\n", line)
        assert ready, line
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{ready.group(1)}/v1/datasets") as response:
                assert response.status == 200
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bad_configuration_fails_at_start_with_one_line():
    process = await start({"GATEWAY_PORT": "not-a-port"})
    _out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith("gateway: bad configuration: port:")
    assert len(lines) == 1


async def test_production_with_a_pay_to_of_its_own_fails_at_start_with_one_line():
    process = await start({"GATEWAY_ENV": "production", "GATEWAY_PAY_TO": "0x" + "12" * 20, "GATEWAY_PORT": "0"})
    _out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1
    assert "GATEWAY_PAY_TO: with GATEWAY_ENV=production the money terms come from the sidecar" in lines[0]
