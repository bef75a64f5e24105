"""A private embedded PostgreSQL that a test can stop and start again, to take
the database away from the code under test for real."""

from __future__ import annotations

from pathlib import Path

import pgserver
from pgserver._commands import pg_ctl


class StoppablePostgres:
    def __init__(self, data_dir: Path) -> None:
        self._server = pgserver.get_server(data_dir, cleanup_mode="delete")

    def url(self, database: str = "postgres") -> str:
        # The socket directory derives from the data directory, so the URL outlives restarts.
        return self._server.get_uri(database)

    def stop(self) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        self._server.cleanup()
