"""`paysidecar-gateway`: serve the gateway until SIGINT or SIGTERM.

Prints `gateway http://<host>:<port>` once listening (port 0 → the real port). On a
signal it stops accepting, lets in-flight requests finish (each settles or releases
its payment) for up to GATEWAY_SHUTDOWN_GRACE_S, then closes the sidecar channel.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web
from pydantic import ValidationError

from paysidecar_common.tracing import TracingSettings

from .app import create_app
from .config import Settings
from .datasets import DatasetError
from .http_server import GatewayRunner
from .tracing import setup_tracing

logger = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    runner = GatewayRunner(create_app(settings), shutdown_timeout=settings.shutdown_grace_s)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        host, port = runner.addresses[0][:2]
        print(f"gateway http://{host}:{port}", flush=True)
        await stop.wait()
        logger.info("gateway stopping: draining in-flight requests")
    finally:
        await runner.cleanup()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
        tracing_settings = TracingSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        sys.exit(f"gateway: bad configuration: {problems}")
    tracing = setup_tracing(tracing_settings)
    try:
        asyncio.run(serve(settings))
    except DatasetError as exc:
        sys.exit(f"gateway: {exc}")
    except OSError as exc:
        sys.exit(f"gateway: {exc}")
    finally:
        tracing.shutdown()  # exports the spans still buffered


if __name__ == "__main__":
    main()
