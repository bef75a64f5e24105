"""The tracking journal: every step is on local disk before the answer of its
call leaves the sidecar, so a crash loses no record of a call that was answered
(DESIGN §6, no loss).

The tracking writer (sidecar/store/tracking.py) keeps steps in memory for a
flush interval, and the record of a call under way for up to its hold, before
they reach PostgreSQL or the outage spool; a crash in that window lost the
records of calls already answered. With the journal:

- `add()` puts a step in the group being gathered: no I/O, never blocks.
- `sync()` returns once every step added so far is on disk. One write and one
  fsync carry the whole group, shared by every call waiting at that moment;
  while that fsync runs, the next group gathers (group commit).
- The writer syncs before it writes anything to PostgreSQL or the spool
  (write-ahead), and calls `trim()` with the number below which every step is
  in one of them; a segment holding only such steps is deleted.
- At start the writer writes again what an earlier process left here, after
  that process's spool (sidecar/store/tracking.py says why that is harmless).

Segments are files in the Spool format, in a directory of their own; each line
is one group (tracking_rows.journal_line).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..payments.lifecycle import Step
from .spool import Spool
from .tracking_rows import journal_line

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024
# Appends go to a new segment once the current one is full or this old, and a
# segment is deleted once its steps all reached PostgreSQL or the spool: a
# restart writes again about this much at most of what had landed already.
ROTATE_S = 1.0


class Journal:
    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES, rotate_s: float = ROTATE_S) -> None:
        self.directory = directory
        self._spool = Spool(directory, segment_bytes=segment_bytes)
        self._rotate_s = rotate_s
        self._group: list[tuple[Any, ...]] = []
        self.seq = 0  # steps added so far: the number of the last one
        self._synced = 0
        self._wanted = 0  # steps up to this number were asked to be written
        self._flushing: asyncio.Task[None] | None = None
        self._io = asyncio.Lock()  # one file operation at a time: Spool is not thread-safe
        self._last: dict[Path, int] = {}  # segment this process wrote -> number of its last step
        self._opened: dict[Path, float] = {}
        self._open = False
        self._failing = False
        self.failed_writes = 0
        self.leftovers: list[Path] = []  # segments an earlier process left, oldest first

    def open(self) -> None:
        """Take the directory (blocking: call from a worker thread) and list what
        an earlier process left in it."""
        self._spool.open()
        self.leftovers = self._spool.segments()
        self._open = True

    def add(self, record_id: uuid.UUID, step: Step, fields: dict[str, Any], stamp: datetime | None) -> int:
        """Add a step (with the timestamp its START stamped); its number."""
        if type(record_id) is not uuid.UUID:  # e.g. asyncpg's own UUID type, from a ledger row
            record_id = uuid.UUID(str(record_id))
        self._group.append((record_id, step, fields) if stamp is None else (record_id, step, fields, stamp))
        self.seq += 1
        return self.seq

    @property
    def synced(self) -> int:
        """Steps up to this number are on disk (or their write failed)."""
        return self._synced

    async def sync(self) -> None:
        """Return once every step added so far is on disk. A failed write is
        logged and counted, never raised: the steps still reach the database."""
        target = self.seq
        while self._synced < target and self._open:
            self.sync_soon()
            assert self._flushing is not None
            # Shielded: a caller that goes away does not cancel the others' fsync.
            await asyncio.shield(self._flushing)

    def sync_soon(self) -> None:
        """Have the steps added so far written, without waiting: now, or as soon
        as the write under way is done."""
        self._wanted = max(self._wanted, self.seq)
        if self._flushing is None and self._synced < self._wanted and self._open:
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            group, self._group = self._group, []
            upto = self.seq
            if group:
                await self._write(group, upto)
            self._synced = upto
        finally:
            self._flushing = None
        if self._synced < self._wanted:
            self.sync_soon()

    async def _write(self, group: list[tuple[Any, ...]], upto: int) -> None:
        try:
            line = journal_line(group)
            async with self._io:
                segment = await asyncio.to_thread(self._spool.append_raw, line, 1)
                self._last[segment] = upto
                self._opened.setdefault(segment, time.monotonic())
        except Exception:
            self.failed_writes += 1
            if not self._failing:
                logger.exception("tracking journal %s: write failed; steps go unjournaled", self.directory)
            self._failing = True
            return
        if self._failing:
            logger.warning("tracking journal %s: writing again", self.directory)
            self._failing = False

    def trim_due(self) -> bool:
        """Whether a segment of this process could go if its steps had landed,
        or the one appended to is old enough to be sealed."""
        active = self._spool.active_segment
        now = time.monotonic()
        return any(path != active or now - self._opened[path] >= self._rotate_s for path in self._last)

    async def trim(self, below: int, *, everything: bool = False) -> None:
        """Delete this process's segments whose steps all have numbers below
        `below` (they are in PostgreSQL or the spool): the one appended to only
        when it is old enough, or `everything` (at close). One old enough that
        still holds steps to land is sealed: it goes once they have landed."""
        async with self._io:
            active = self._spool.active_segment
            now = time.monotonic()
            old = active is not None and now - self._opened.get(active, now) >= self._rotate_s
            done = [
                path
                for path, last in self._last.items()
                if last < below and (everything or path != active or old)
            ]
            seal = old and active not in done
            if not done and not seal:
                return
            try:
                await asyncio.to_thread(self._remove, done, seal)
            except OSError:
                logger.exception("tracking journal %s: could not delete a segment", self.directory)
            for path in done:
                del self._last[path], self._opened[path]

    def read(self, segment: Path) -> Iterator[list[str]]:
        """The lines of a leftover segment, one at a time (blocking: iterate in a
        worker thread). A torn last line, never synced, is skipped."""
        return self._spool.read(segment, 1)

    async def discard(self, segment: Path) -> None:
        """Delete a leftover segment once it has been written again."""
        async with self._io:
            await asyncio.to_thread(self._spool.remove, segment)
        self.leftovers.remove(segment)

    async def close(self, *, keep: bool) -> None:
        """Sync, delete this process's segments unless `keep` (steps that reached
        neither the database nor the spool), release the directory."""
        if not self._open:
            return
        await self.sync()
        if not keep:
            await self.trim(self.seq + 1, everything=True)
        self._open = False
        async with self._io:
            await asyncio.to_thread(self._spool.close)

    def _remove(self, segments: list[Path], seal: bool) -> None:
        for segment in segments:
            self._spool.remove(segment)
        if seal:
            self._spool.seal()
