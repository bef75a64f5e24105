"""The devnet processes: `python -m devnet.facilitator` and the `make run` launcher."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from devnet.chain import NETWORK
from devnet.up import FACILITATOR_READY, MAX_SIDECARS, Child, LaunchError, pick_port, sidecar_count, sidecar_ports
from devnet.wallets import MERCHANT_ADDRESS
from paysidecar.v1 import status_pb2, status_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"^(http|grpc)://127\.0\.0\.1:\d+$")


def test_pick_port_prefers_the_environment_then_a_free_default():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]

        assert pick_port({"GATEWAY_PORT": "0"}, "GATEWAY_PORT", taken) == 0
        assert pick_port({"GATEWAY_PORT": str(taken)}, "GATEWAY_PORT", 1) == taken
        assert pick_port({}, "GATEWAY_PORT", taken) == 0
    free = taken  # released above
    assert pick_port({}, "GATEWAY_PORT", free) == free


@pytest.mark.parametrize("value", ["http", "70000", "-1"])
def test_pick_port_refuses_a_bad_value(value):
    with pytest.raises(LaunchError, match="GATEWAY_PORT"):
        pick_port({"GATEWAY_PORT": value}, "GATEWAY_PORT", 8402)


@pytest.mark.parametrize(
    ("value", "count"), [(None, 1), ("", 1), ("1", 1), ("3", 3), (str(MAX_SIDECARS), MAX_SIDECARS)]
)
def test_sidecars_says_how_many_sidecars_to_start(value, count):
    assert sidecar_count({} if value is None else {"SIDECARS": value}) == count


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", str(MAX_SIDECARS + 1)])
def test_sidecars_refuses_a_bad_count(value):
    with pytest.raises(LaunchError, match="SIDECARS must be a whole number"):
        sidecar_count({"SIDECARS": value})


def test_each_sidecar_gets_its_own_port():
    assert sidecar_ports({"PAYSIDECAR_PORT": "0"}, 3) == [0, 0, 0]
    assert sidecar_ports({"PAYSIDECAR_PORT": "6000"}, 3) == [6000, 6001, 6002]
    with pytest.raises(LaunchError, match="no room for 2 sidecars"):
        sidecar_ports({"PAYSIDECAR_PORT": "65535"}, 2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_the_facilitator_process_announces_its_url_and_stops_cleanly(http, signum):
    args = [sys.executable, "-m", "devnet.facilitator", "--host", "127.0.0.1", "--port", "0"]
    child = await Child.start("facilitator", args, os.environ, FACILITATOR_READY)
    try:
        url = (await child.wait_ready(30)).group(1)
        async with http.get(url + "/supported") as response:
            assert response.status == 200
        child.process.send_signal(signum)
        assert await child.wait_exit(15) == 0
    finally:
        await child.stop()


async def test_a_child_dying_before_ready_is_reported_with_its_last_output():
    script = "import sys; print('starting'); sys.stderr.write('boom: bad config\\n'); sys.exit(3)"
    child = await Child.start("sidecar", [sys.executable, "-c", script], os.environ, FACILITATOR_READY)

    with pytest.raises(LaunchError) as raised:
        await child.wait_ready(30)

    assert "sidecar exited with code 3 before it was ready" in str(raised.value)
    assert "boom: bad config" in str(raised.value)


async def test_a_child_that_never_gets_ready_times_out_and_is_stopped():
    script = "import time; print('warming up', flush=True); time.sleep(60)"
    child = await Child.start("gateway", [sys.executable, "-c", script], os.environ, FACILITATOR_READY)

    with pytest.raises(LaunchError, match=r"gateway was not ready within 1 s(.|\n)*warming up"):
        await child.wait_ready(1)
    assert await child.stop() == -signal.SIGTERM


def _launcher_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FACILITATOR_URLS", "CHAIN_RPC_URLS")}
    env.update(
        DATABASE_URL=database_url,
        GATEWAY_PORT="0",
        PAYSIDECAR_PORT="0",
        DEVNET_FACILITATOR_PORT="0",
        **extra,
    )
    return env


@contextlib.asynccontextmanager
async def _launched(env: dict[str, str], stderr_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m devnet.up`, its stderr in a file; killed if the test leaves it running."""
    with stderr_path.open("wb") as stderr:
        launcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devnet.up", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    try:
        yield launcher
    finally:
        if launcher.returncode is None:
            launcher.kill()
            await launcher.wait()


def _stop_order(stderr_path: Path) -> list[str]:
    """The children in the order the launcher reported them stopped."""
    lines = stderr_path.read_text().splitlines()
    return [line.split()[1] for line in lines if line.endswith(")") and "stopped" in line]


async def _summary(launcher: asyncio.subprocess.Process) -> list[str]:
    """The stdout lines up to the 'Press Ctrl-C' line."""
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        line = await asyncio.wait_for(launcher.stdout.readline(), 90)
        if not line:
            raise AssertionError(f"launcher ended before its summary: {lines}")
        lines.append(line.decode().rstrip("\n"))
    return lines


async def _refuses_connections(url: str) -> bool:
    host, port = url.split("//")[1].split(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return True
    writer.close()
    return False


async def test_the_launcher_runs_the_stack_and_stops_it_on_sigint(database_url, http, tmp_path):
    async with _launched(_launcher_env(database_url), tmp_path / "stderr") as launcher:
        summary = await _summary(launcher)
        gateway, sidecar, facilitator = [line for line in summary if URL_LINE.match(line)]
        assert gateway.startswith("http://") and sidecar.startswith("grpc://")
        assert f"  curl -i {gateway}/v1/records" in summary
        assert f"  .venv/bin/paysidecar-cli call '{gateway}/v1/records?_limit=3'" in summary
        assert f"  .venv/bin/paysidecar-cli status --sidecar {sidecar[len('grpc://'):]}" in summary
        assert f"  .venv/bin/paysidecar-cli discover {facilitator}" in summary

        async with http.get(gateway + "/v1/datasets") as response:
            assert response.status == 200
            datasets = (await response.json())["datasets"]
        async with http.get(gateway + "/v1/records") as response:
            assert response.status == 402
            offers = (await response.json())["accepts"]
        # Zero config: the sidecar's default route holds the devnet's terms, the
        # listing shows them and the 402 offers them, both schemes, exact first.
        assert [offer["scheme"] for offer in offers] == ["exact", "batch-settlement"]
        for dataset in datasets:
            assert (dataset["price"], dataset["pay_to"], dataset["network"]) == ("$0.001", MERCHANT_ADDRESS, NETWORK)
            assert dataset["schemes"] == ["exact", "batch-settlement"]
        assert {(o["amount"], o["payTo"], o["network"]) for o in offers} == {("1000", MERCHANT_ADDRESS, NETWORK)}
        async with http.get(facilitator + "/supported") as response:
            assert response.status == 200
            schemes = {kind["scheme"] for kind in (await response.json())["kinds"]}
        assert schemes == {"exact", "batch-settlement"}

        launcher.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(launcher.wait(), 60) == 0
    for url in (gateway, sidecar, facilitator):
        assert await _refuses_connections(url), url
    assert _stop_order(tmp_path / "stderr") == ["gateway", "sidecar", "facilitator"]


async def test_the_launcher_uses_facilitator_urls_from_the_environment(database_url, tmp_path):
    env = _launcher_env(database_url, FACILITATOR_URLS="http://127.0.0.1:9")
    async with _launched(env, tmp_path / "stderr") as launcher:
        summary = await _summary(launcher)
        launcher.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(launcher.wait(), 60) == 0

    assert [line for line in summary if URL_LINE.match(line)][0].startswith("http://")
    assert len([line for line in summary if URL_LINE.match(line)]) == 2
    assert "[facilitator]" not in (tmp_path / "stderr").read_text()


async def test_the_launcher_stops_what_it_started_when_a_child_fails(database_url, tmp_path):
    # A production sidecar refuses the testnet at start.
    async with _launched(_launcher_env(database_url, PAYSIDECAR_ENV="production"), tmp_path / "stderr") as launcher:
        assert await asyncio.wait_for(launcher.wait(), 90) == 1

    stderr = (tmp_path / "stderr").read_text()
    assert "devnet: sidecar exited with code 2 before it was ready" in stderr
    assert "production refuses testnet" in stderr
    facilitator = re.search(r"\[facilitator\] devnet facilitator (http://\S+)", stderr).group(1)
    assert await _refuses_connections(facilitator)
    assert await launcher.stdout.read() == b""


async def _telemetry_events(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        status = status_pb2_grpc.StatusServiceStub(channel)
        answer = await status.GetTelemetry(status_pb2.GetTelemetryRequest(limit=100))
    return sum(1 for event in answer.events if event.name == "request_received")


async def test_sidecars_2_starts_two_sidecars_on_one_database_and_the_gateway_balances_over_them(
    database_url, http, tmp_path
):
    spool = tmp_path / "spool"
    env = _launcher_env(database_url, SIDECARS="2", PAYSIDECAR_SPOOL_DIR=str(spool))
    async with _launched(env, tmp_path / "stderr") as launcher:
        summary = await _summary(launcher)
        gateway, first, second, facilitator = [line for line in summary if URL_LINE.match(line)]
        assert (first.startswith("grpc://"), second.startswith("grpc://"), first != second) == (True, True, True)
        for sidecar in (first, second):
            assert f"  .venv/bin/paysidecar-cli status --sidecar {sidecar[len('grpc://'):]}" in summary

        for _ in range(4):  # unpaid: one Authorize each, spread over both sidecars
            async with http.get(gateway + "/v1/records") as response:
                assert response.status == 402
        counts = [await _telemetry_events(sidecar[len("grpc://"):]) for sidecar in (first, second)]
        assert all(counts) and sum(counts) == 4, counts

        launcher.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(launcher.wait(), 60) == 0
    for url in (gateway, first, second, facilitator):
        assert await _refuses_connections(url), url
    # Each sidecar had a spool directory of its own (one owner each).
    assert (spool.is_dir(), (tmp_path / "spool-2").is_dir()) == (True, True)
    assert _stop_order(tmp_path / "stderr") == ["gateway", "sidecar-2", "sidecar-1", "facilitator"]
