"""Taking the test's PostgreSQL away (and back) from a process that serves gRPC.

pg_ctl is run by a fresh Python child rather than forked from the test process:
forked straight from a process whose gRPC threads are busy, it crashed now and
then (SIGSEGV/SIGBUS in the child) and the outage never happened."""

from __future__ import annotations

import asyncio
import sys

from tests.store.stoppable_postgres import StoppablePostgres

from .processes import child_env

_STOP = (
    "import sys; from pgserver._commands import pg_ctl; "
    "pg_ctl(['-w', '-m', 'fast', 'stop'], pgdata=sys.argv[1], user=sys.argv[2] or None)"
)
# A handle without cleanup: it starts the server (same socket directory, same URL) and leaves it running.
_START = "import sys, pgserver; pgserver.get_server(sys.argv[1], cleanup_mode=None)"
TIMEOUT_S = 60.0


class OutagePostgres(StoppablePostgres):
    async def go_down(self) -> None:
        await self._run(_STOP, str(self._server.pgdata), self._server.system_user or "")

    async def come_back(self) -> None:
        await self._run(_START, str(self._server.pgdata))

    @staticmethod
    async def _run(code: str, *args: str) -> None:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, *args, env=child_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(child.communicate(), TIMEOUT_S)
        if child.returncode != 0:
            raise RuntimeError(f"pg_ctl child failed ({child.returncode}): {output.decode(errors='replace')[-2000:]}")
