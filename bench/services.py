"""The processes of a benchmark run: each started from the repository root, ready
when it prints its ready line, its output in a log file, stopped by its own id.

Child stderr goes straight to the log file, not through this process: the load
generator runs here, and pumping every log line of the servers through it would
take CPU from the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
TAIL_LINES = 20

# The telemetry exporters stay off unless the caller's environment picks one:
# the default OTLP exporter would retry a collector that is not there.
_QUIET_TELEMETRY = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


class ServiceError(Exception):
    """A service did not start; the message holds the end of its log."""


@dataclass
class Service:
    name: str
    process: asyncio.subprocess.Process
    ready: re.Match[str]
    log_path: Path
    # Wrapped in a sampling profiler: stopped with SIGINT to its whole process
    # group, so the profiler writes its output after the service exits.
    profiled: bool = False
    _drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.ready.group(1)

    @property
    def port(self) -> int:
        return int(self.ready.group(2))

    @property
    def pid(self) -> int:
        return self.process.pid


def child_env(**overrides: str) -> dict[str, str]:
    env = {**_QUIET_TELEMETRY, **os.environ, "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return " (no log)"
    return "; last log lines:\n" + "\n".join(f"  {line}" for line in lines) if lines else " (empty log)"


async def start(
    name: str,
    argv: list[str],
    env: dict[str, str],
    ready: re.Pattern[str],
    log_dir: Path,
    *,
    profiled: bool = False,
    timeout_s: float = READY_TIMEOUT_S,
) -> Service:
    """Start `argv` and wait for a stdout line matching `ready` (group 1 = URL, 2 = port)."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab", buffering=0) as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
    service_log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed by the drain task
    try:
        match = await asyncio.wait_for(_ready_line(process, ready, service_log), timeout_s)
    except (TimeoutError, ServiceError) as error:
        service_log.close()
        await _kill(process, profiled)
        why = "exited before it was ready" if process.returncode is not None else f"not ready in {timeout_s:.0f} s"
        raise ServiceError(f"{name} {why} ({error or 'timeout'}){_tail(log_path)}") from None
    service = Service(name, process, match, log_path, profiled)
    service._drain = asyncio.create_task(_copy_rest(process, service_log))
    return service


async def _ready_line(process: asyncio.subprocess.Process, ready: re.Pattern[str], log) -> re.Match[str]:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        log.write(line)
        if match := ready.match(line.decode(errors="replace").strip()):
            return match
    raise ServiceError("stdout closed")


async def _copy_rest(process: asyncio.subprocess.Process, log) -> None:
    assert process.stdout is not None
    try:
        while chunk := await process.stdout.read(65536):
            log.write(chunk)
    finally:
        log.close()


async def stop(service: Service, timeout_s: float = STOP_TIMEOUT_S) -> int:
    """Stop gracefully, then kill after `timeout_s`; the exit code."""
    process = service.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            if service.profiled:
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            await _kill(process, service.profiled)
    if service._drain is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service._drain, 5)
    return process.returncode  # type: ignore[return-value]


async def _kill(process: asyncio.subprocess.Process, group: bool) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        await process.wait()
