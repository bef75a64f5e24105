"""Small loopback helpers shared by the tests: a closed port, bounded waits, and
a raw HTTP client that goes away mid-request."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Polls a condition until it holds, failing after a bounded time."""
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.02)


async def ledger_state(database_url: str) -> str | None:
    """The state of the (only) payment in the ledger."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT state FROM payment_ledger")
    finally:
        await conn.close()


async def send_then_vanish(url: str, header: str, gone_when: Callable[[], Awaitable[bool]]) -> None:
    """A raw HTTP client that sends a paid GET, then resets the connection once
    `gone_when()` holds, without reading any answer."""
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nPAYMENT-SIGNATURE: {header}\r\n\r\n".encode())
    await writer.drain()
    await wait_until(gone_when)
    writer.transport.abort()
