"""`python -m sidecar.main` / `paysidecar`: run the sidecar until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from paysidecar_common.tracing import TracingSettings

from .app import Sidecar
from .config import Settings
from .telemetry.tracing import SidecarTracing, setup_tracing


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
    return f"paysidecar: bad config: {where}: {first.get('msg')}"


async def serve(settings: Settings, tracing: SidecarTracing | None = None) -> None:
    sidecar = Sidecar(settings, tracing=tracing)
    await sidecar.start()
    print(f"paysidecar grpc://{settings.host}:{sidecar.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sidecar.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
        tracing_settings = TracingSettings()
    except ValidationError as error:
        print(_one_line(error), file=sys.stderr)
        sys.exit(2)
    tracing, instrumentation = setup_tracing(tracing_settings)
    try:
        asyncio.run(serve(settings, instrumentation))
    except (OSError, RuntimeError) as error:
        print(f"paysidecar: cannot start: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        tracing.shutdown()  # exports the spans still buffered


if __name__ == "__main__":
    main()
