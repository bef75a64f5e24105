"""`make run` (`devnet`, `python -m devnet.up`): the whole stack on one machine.

Steps: PostgreSQL ($DATABASE_URL, else an embedded pgserver in .devnet/pgdata) →
migrations (`python -m sidecar.store.migrate`) → the devnet facilitator, unless
$FACILITATOR_URLS names others → the sidecar ($SIDECARS of them, default 1, all on the
one database, each with its own port and spool directory) → the gateway, balancing over
every sidecar. Each child must print its ready line in time, or everything started so
far is stopped and the child's last output shown. Then the gateway URL, each sidecar's
target and the facilitator URL are printed on stdout, each alone on its line, with
commands to try. SIGINT/SIGTERM stop the children in order gateway → sidecars (last
first) → facilitator → PostgreSQL.

Child output goes to this process's stderr, prefixed with the child's name, so stdout
carries only the summary.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from .chain import NETWORK
from .wallets import MERCHANT_ADDRESS

DEFAULT_GATEWAY_PORT = 8402
DEFAULT_SIDECAR_PORT = 50051
DEFAULT_FACILITATOR_PORT = 4021
DEFAULT_SCHEMES = "exact,batch-settlement"
DEVNET_PRICE = "$0.001"
# What `make run` charges (DESIGN §10), set where money terms live: the sidecar's
# default route, which the gateway's datasets are paid with (the gateway sends the
# route's name, no terms). USDC on the devnet's chain, to the devnet merchant; both
# schemes, exact first, so a client that takes the first offer it knows keeps paying
# exact. Each one set in the environment wins.
DEVNET_ROUTE = {
    "PAYSIDECAR_DEFAULT_PRICE": DEVNET_PRICE,
    "PAYSIDECAR_PAY_TO": MERCHANT_ADDRESS,
    "PAYSIDECAR_NETWORK": NETWORK,
    "PAYSIDECAR_SCHEMES": DEFAULT_SCHEMES,
}
PGDATA = Path(".devnet") / "pgdata"
# The sidecar's own default PAYSIDECAR_SPOOL_DIR: the first sidecar keeps it, the
# others add "-2", "-3"... (a spool directory has one owner, kept across restarts).
SIDECAR_SPOOL_DIR = str(Path(".paysidecar") / "spool")
MAX_SIDECARS = 16

READY_TIMEOUT_S = 60.0
MIGRATE_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
TAIL_LINES = 25
_LINE_LIMIT = 1 << 20  # longest output line forwarded whole

FACILITATOR_READY = re.compile(r"^devnet facilitator (http://\S+:(\d+))\s*$")
SIDECAR_READY = re.compile(r"^paysidecar (grpc://\S+:(\d+))\s*$")
GATEWAY_READY = re.compile(r"^gateway (http://\S+:(\d+))\s*$")

T = TypeVar("T")


class LaunchError(Exception):
    """A step of the launch failed; the message says which and why."""


class Stopped(Exception):
    """SIGINT/SIGTERM arrived while starting."""


@dataclass
class Child:
    """A child process whose output is forwarded, prefixed, to our stderr."""

    name: str
    process: asyncio.subprocess.Process
    ready_pattern: re.Pattern[str] | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    ready: asyncio.Future[re.Match[str]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        ready_pattern: re.Pattern[str] | None = None,
        err: TextIO | None = None,
    ) -> Child:
        process = await asyncio.create_subprocess_exec(
            *args,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
            # Its own session: a terminal's Ctrl-C reaches only us, and we stop the
            # children in order.
            start_new_session=True,
        )
        child = cls(name, process, ready_pattern)
        sink = err or sys.stderr
        child._pumps = [
            asyncio.create_task(child._pump(process.stdout, sink, watch=True)),
            asyncio.create_task(child._pump(process.stderr, sink, watch=False)),
        ]
        return child

    async def _pump(self, stream: asyncio.StreamReader | None, sink: TextIO, watch: bool) -> None:
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\r\n")
            self.tail.append(text)
            sink.write(f"[{self.name}] {text}\n")
            sink.flush()
            if watch and self.ready_pattern is not None and not self.ready.done():
                if match := self.ready_pattern.match(text):
                    self.ready.set_result(match)

    async def wait_ready(self, timeout: float) -> re.Match[str]:
        """The ready line's match; LaunchError if the child exits or is late first."""
        exited = asyncio.ensure_future(self.process.wait())
        try:
            done, _ = await asyncio.wait({self.ready, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if self.ready in done:
            return self.ready.result()
        if exited in done:
            await self._drain()
            raise LaunchError(f"{self.name} exited with code {self.process.returncode} before it was ready{self.last_output()}")
        raise LaunchError(f"{self.name} was not ready within {timeout:.0f} s{self.last_output()}")

    async def wait_exit(self, timeout: float) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise LaunchError(f"{self.name} did not finish within {timeout:.0f} s{self.last_output()}") from None
        await self._drain()
        return code

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        await self._drain()
        return self.process.returncode  # type: ignore[return-value]

    async def _drain(self) -> None:
        # The pipes close when the process exits; let the pumps forward what is left.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps), 5)

    def last_output(self) -> str:
        if not self.tail:
            return " (no output)"
        return "; its last output:\n" + "\n".join(f"  {line}" for line in self.tail)


def pick_port(env: Mapping[str, str], name: str, default: int) -> int:
    """$name if set (0 = any free port), else `default` when free, else 0."""
    value = env.get(name)
    if value is not None and value.strip():
        try:
            port = int(value)
        except ValueError:
            raise LaunchError(f"{name} must be a port number, got {value!r}") from None
        if not 0 <= port <= 65535:
            raise LaunchError(f"{name} must be between 0 and 65535, got {port}")
        return port
    return default if port_is_free(default) else 0


def sidecar_count(env: Mapping[str, str]) -> int:
    """$SIDECARS: how many sidecars to start (default 1)."""
    value = env.get("SIDECARS", "").strip() or "1"
    if not value.isdigit() or not 1 <= int(value) <= MAX_SIDECARS:
        raise LaunchError(f"SIDECARS must be a whole number from 1 to {MAX_SIDECARS}, got {value!r}")
    return int(value)


def sidecar_ports(env: Mapping[str, str], count: int) -> list[int]:
    """One port per sidecar: $PAYSIDECAR_PORT and the ones after it (0 = any free
    port for each), else 50051, 50052... where free, else any free port."""
    first = pick_port(env, "PAYSIDECAR_PORT", DEFAULT_SIDECAR_PORT)
    if first == 0:
        return [0] * count
    chosen = bool(env.get("PAYSIDECAR_PORT", "").strip())
    ports = [first + n for n in range(count)]
    if any(port > 65535 for port in ports):
        raise LaunchError(f"PAYSIDECAR_PORT {first} leaves no room for {count} sidecars")
    return [port if chosen or port_is_free(port) else 0 for port in ports]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class Launcher:
    """Starts the stack step by step; stops what it started, newest first."""

    def __init__(self, env: Mapping[str, str], out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._env = dict(env)
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._children: list[Child] = []
        self._postgres: Any = None  # pgserver.PostgresServer when we run one
        self._stop = asyncio.Event()
        self.gateway_url = ""
        self.sidecar_urls: list[str] = []
        self.facilitator_url: str | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """0 after a requested stop, 1 when a step or a child failed."""
        failed = False
        try:
            await self._start()
            self._summary()
            failed = await self._until_stop_or_child_exit()
        except Stopped:
            pass
        except LaunchError as error:
            self._say(f"devnet: {error}")
            failed = True
        finally:
            await self._shutdown()
        return 1 if failed else 0

    async def _start(self) -> None:
        env = self._env
        python = sys.executable
        env.setdefault("PYTHONUNBUFFERED", "1")

        sidecars = sidecar_count(env)
        if not env.get("DATABASE_URL"):
            # Not abandoned on a stop: the server must be known before it can be stopped.
            env["DATABASE_URL"] = await asyncio.to_thread(self._start_postgres)
            if self._stop.is_set():
                raise Stopped
        migrate = await self._spawn("migrate", [python, "-m", "sidecar.store.migrate"], env, None)
        code = await self._until(migrate.wait_exit(MIGRATE_TIMEOUT_S))
        self._children.remove(migrate)
        if code != 0:
            raise LaunchError(f"migrations failed with exit code {code}{migrate.last_output()}")

        if not env.get("FACILITATOR_URLS"):
            port = pick_port(env, "DEVNET_FACILITATOR_PORT", DEFAULT_FACILITATOR_PORT)
            args = [python, "-m", "devnet.facilitator", "--host", "127.0.0.1", "--port", str(port)]
            facilitator = await self._spawn("facilitator", args, env, FACILITATOR_READY)
            self.facilitator_url = (await self._until(facilitator.wait_ready(READY_TIMEOUT_S))).group(1)
            env["FACILITATOR_URLS"] = self.facilitator_url
            env.setdefault("CHAIN_RPC_URLS", f"{NETWORK}={self.facilitator_url}/rpc")

        spool = env.get("PAYSIDECAR_SPOOL_DIR") or SIDECAR_SPOOL_DIR
        ready_ports = []
        for number, port in enumerate(sidecar_ports(env, sidecars), start=1):
            name = "sidecar" if sidecars == 1 else f"sidecar-{number}"
            sidecar_env = {
                **env,
                **{name: env.get(name) or value for name, value in DEVNET_ROUTE.items()},
                "PAYSIDECAR_PORT": str(port),
                "PAYSIDECAR_SPOOL_DIR": spool if number == 1 else f"{spool}-{number}",
            }
            sidecar = await self._spawn(name, [python, "-m", "sidecar.main"], sidecar_env, SIDECAR_READY)
            ready = await self._until(sidecar.wait_ready(READY_TIMEOUT_S))
            self.sidecar_urls.append(ready.group(1))
            ready_ports.append(int(ready.group(2)))

        gateway_env = {
            **env,
            "GATEWAY_PORT": str(pick_port(env, "GATEWAY_PORT", DEFAULT_GATEWAY_PORT)),
            # Several addresses: the gateway balances over them (round_robin, health checks).
            "GATEWAY_SIDECAR_TARGET": ",".join(f"127.0.0.1:{port}" for port in ready_ports),
        }
        gateway = await self._spawn("gateway", [python, "-m", "gateway.main"], gateway_env, GATEWAY_READY)
        self.gateway_url = (await self._until(gateway.wait_ready(READY_TIMEOUT_S))).group(1)

    def _start_postgres(self) -> str:
        import pgserver

        self._say(f"devnet: starting embedded PostgreSQL in {PGDATA}")
        try:
            PGDATA.parent.mkdir(parents=True, exist_ok=True)
            self._postgres = pgserver.get_server(PGDATA, cleanup_mode="stop")
            return self._postgres.get_uri()
        except Exception as error:
            raise LaunchError(f"embedded PostgreSQL did not start ({type(error).__name__}: {error})") from error

    async def _spawn(self, name: str, args: list[str], env: Mapping[str, str], ready: re.Pattern[str] | None) -> Child:
        child = await Child.start(name, args, env, ready, self._err)
        self._children.append(child)
        return child

    async def _until(self, step: Awaitable[T]) -> T:
        """Await a step, abandoning it when a stop is requested."""
        task = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            raise Stopped
        return task.result()

    async def _until_stop_or_child_exit(self) -> bool:
        """Wait for a stop request (False) or a child's death (True)."""
        stop = asyncio.ensure_future(self._stop.wait())
        exits = {asyncio.ensure_future(child.process.wait()): child for child in self._children}
        try:
            done, _ = await asyncio.wait({stop, *exits}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop, *exits):
                waiter.cancel()
        for waiter, child in exits.items():
            if waiter in done:
                await child.stop()
                self._say(f"devnet: {child.name} exited with code {child.process.returncode}{child.last_output()}")
                return True
        return False

    async def _shutdown(self) -> None:
        for child in reversed(self._children):
            code = await child.stop()
            self._say(f"devnet: {child.name} stopped (exit code {code})")
        self._children.clear()
        if self._postgres is not None:
            await asyncio.to_thread(self._postgres.cleanup)
            self._postgres = None
            self._say("devnet: PostgreSQL stopped")

    def _summary(self) -> None:
        sidecar_targets = [url.removeprefix("grpc://") for url in self.sidecar_urls]
        lines = [
            "paysidecar devnet is up.",
            "Gateway (HTTP):",
            self.gateway_url,
            "Sidecar (gRPC):" if len(self.sidecar_urls) == 1 else "Sidecars (gRPC; the gateway balances over them):",
            *self.sidecar_urls,
        ]
        if self.facilitator_url:
            lines += [
                "Devnet facilitator (x402 /verify /settle, Bazaar /discovery/resources, JSON-RPC at /rpc):",
                self.facilitator_url,
            ]
        else:
            # No URL on this line: the URL lines above are the ones checkers read.
            lines.append("Facilitators: as FACILITATOR_URLS names them (no devnet facilitator started)")
        lines.append(_tracing_line(self._env))
        # A channel payer reads the chain to resynchronise; say where it is.
        rpc = f" --rpc-url {self.facilitator_url}/rpc" if self.facilitator_url else ""
        lines += [
            "Try:",
            f"  curl -i {self.gateway_url}/v1/datasets",
            f"  curl -i {self.gateway_url}/v1/records",
            f"  .venv/bin/paysidecar-cli call '{self.gateway_url}/v1/records?_limit=3'",
            f"  .venv/bin/paysidecar-cli call --scheme batch-settlement{rpc} '{self.gateway_url}/v1/records?_limit=3'",
            f"  .venv/bin/paysidecar-cli channels --sidecar {sidecar_targets[0]}",
            f"  .venv/bin/paysidecar-cli records --sidecar {sidecar_targets[0]}",
            *(f"  .venv/bin/paysidecar-cli status --sidecar {target}" for target in sidecar_targets),
        ]
        if self.facilitator_url:
            lines.append(f"  .venv/bin/paysidecar-cli discover {self.facilitator_url}")
        lines.append("Press Ctrl-C to stop.")
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def _say(self, text: str) -> None:
        self._err.write(text + "\n")
        self._err.flush()


def _tracing_line(env: Mapping[str, str]) -> str:
    """Where the sidecar's and gateway's traces go (they read the OTEL_* variables we pass on)."""
    exporter = env.get("OTEL_TRACES_EXPORTER", "none").strip() or "none"
    if exporter == "none":
        return "Traces: off; OTEL_TRACES_EXPORTER=otlp sends them to Jaeger or any OTLP viewer (README: Seeing traces)"
    return f"Traces: on (OTEL_TRACES_EXPORTER={exporter}); the x-trace-id header of each answer names its trace"


async def launch(env: Mapping[str, str]) -> int:
    launcher = Launcher(env)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, launcher.request_stop)
    return await launcher.run()


def main() -> None:
    sys.exit(asyncio.run(launch(os.environ)))


if __name__ == "__main__":
    main()
