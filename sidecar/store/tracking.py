"""The tracking write path: ordered, batched, asynchronous, and lossless while
PostgreSQL is away (DESIGN §6).

`record()` only folds the step into the pending write of its record, so the
request path never waits on the database. One background task takes everything
pending at a time (a "cycle"), writes it and only then takes the next: a record
has at most one row write per cycle, so its steps land in the order recorded,
and the slower the database the more steps each cycle coalesces. A cycle's row
writes go out in chunks of `batch_size` rows, up to `parallelism` chunks at once
(they touch different rows).

When the database is unreachable, a cycle's writes go to an append-only spool
on local disk instead, and so does every later cycle until the spool has been
replayed (in order) — a later step can never overtake a spooled one. The spool
is replayed at start() and, while the database is down, every
`recheck_interval_s`. Replaying is idempotent (an insert that finds its row sets
the same columns), so a crash during replay loses and breaks nothing.

A record whose call is still under way (its row not written yet, no FINALIZE)
is held back from a cycle for up to `hold_s`: written a moment later, its row
goes in whole by one insert instead of an insert and then updates, each of which
rewrites every index. flush() and close() hold nothing back.

Rows a chunk starts go in by COPY (sidecar/store/tracking_copy.py); a chunk
whose COPY meets a row that is there already is written again with upserts.

The table is partitioned by the time a record began ("timestamp", sidecar/store/
partitions.py) and a row is its id and that time. A chunk's STARTs first look
for rows of their ids from a day either side: a START for a record that has its
row (a retried Authorize, on this replica or another; a spool or journal written
again) takes that row's time and is upserted into it. A later step's UPDATE
carries the START time this writer kept (StartTimes), so PostgreSQL looks in
one partition; without it, or when it is not the row's, by id in all of them.

A later step whose row is not there yet waits for it, for up to `row_wait_s`:
in a pool of sidecars the call may have begun on another replica, whose writer
writes the row a moment later (it holds a call under way back, see above). The
record's next steps join the waiting write, so they still land in order; tried
again every `max(flush_interval_s, hold_s)`, it is counted missing only once the
wait is over, or at close() (the journal is then kept, so the next start writes
it again). flush() does not wait for the row.

Every step also goes to a journal on local disk (sidecar/store/journal.py),
which `durable()` syncs before an answer leaves. A step reaches the database or
the spool only once it is in the journal (write-ahead): a cycle takes the
writes whose steps are all journaled and starts a journal write for the others,
which wait for the next cycle, so the database and the disk work at the same
time; flush() and close() wait for the journal instead. At start, after the
spool, the writer writes again what the journal kept: steps that had not
landed, and some that had. Writing a step again is harmless: each row write
sets columns to the values its steps give them (metadata keys merge; a START
keeps the row's timestamp), and the journal is replayed in the order the steps
were recorded, with every later step of the record (write-ahead): the row ends
as it was, or as it should have been. No row is doubled: a START upserts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from ..payments.lifecycle import Step
from ..telemetry.batch_links import BatchLinks, batch_span, enqueued
from .db import UNAVAILABLE_ERRORS, create_pool
from .journal import Journal
from .schema import TABLE
from .spool import Spool
from .tracking_copy import copy_data, source
from .tracking_rows import KEY_TIME, RowWrite, StartTimes, from_line, journal_steps, to_line
from .tracking_sql import CONTINUE_WITHIN, CONTINUED, arguments, statement

__all__ = ["Step", "TrackingWriter"]

logger = logging.getLogger(__name__)

Rows = list[tuple[uuid.UUID, RowWrite]]
# (starts the record, columns set) -> the row writes of that shape, RowWrite.encoded()
Groups = dict[tuple[bool, frozenset[str]], list[tuple[uuid.UUID, dict[str, Any]]]]

# Errors that no retry fixes: the rows are tried one by one and the bad one is dropped.
_REJECTED_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)

JOURNAL_DIRECTORY = "journal"  # inside the spool directory


class TrackingWriter:
    def __init__(
        self,
        pool_or_dsn: asyncpg.Pool | str,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.05,
        spool_dir: Path,
        parallelism: int = 2,
        recheck_interval_s: float = 1.0,
        write_timeout_s: float = 30.0,
        hold_s: float = 0.25,
        row_wait_s: float = 30.0,
    ) -> None:
        if isinstance(pool_or_dsn, str):
            self._dsn: str | None = pool_or_dsn
            self._pool: asyncpg.Pool | None = None
        else:
            self._dsn = None
            self._pool = pool_or_dsn
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._spool = Spool(Path(spool_dir))
        self._journal = Journal(Path(spool_dir) / JOURNAL_DIRECTORY)
        self._journal_whole = True  # False once closing dropped steps: the journal keeps them
        self._parallelism = parallelism
        self._slots = asyncio.Semaphore(parallelism)
        self._recheck_s = recheck_interval_s
        self._timeout = write_timeout_s
        self._hold_s = hold_s
        self._row_wait_s = row_wait_s

        self._pending: dict[uuid.UUID, RowWrite] = {}
        # Writes of records whose row is not there yet (begun on another replica).
        self._waiting: dict[uuid.UUID, RowWrite] = {}
        self._pending_steps = 0
        self._fresh_steps = 0  # steps recorded since the last cycle took the pending writes
        self._first_pending_at = 0.0
        self._enqueued = 0  # steps recorded so far
        self._durable = 0  # steps written to the database or the spool so far
        self._flush_wanted = False
        self._closing = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._database_up = True
        self._next_check = 0.0
        self._missing_rows = 0
        self._rejected_rows = 0
        self._links = BatchLinks()  # the request spans each batch write links to
        self._started = StartTimes()  # so updates name the row's partition

    # -- status ---------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Steps recorded but not yet in the database or the spool."""
        return self._enqueued - self._durable

    @property
    def spool_records(self) -> int:
        """Row writes waiting in the spool."""
        return self._spool.records

    @property
    def spool_bytes(self) -> int:
        return self._spool.bytes

    @property
    def missing_rows(self) -> int:
        """Steps whose row was not there to update (after waiting for it)."""
        return self._missing_rows

    @property
    def rejected_rows(self) -> int:
        """Row writes PostgreSQL refused for their values (logged and dropped)."""
        return self._rejected_rows

    @property
    def database_up(self) -> bool:
        return self._database_up

    @property
    def journal_failures(self) -> int:
        """Journal writes that failed (their steps could be lost in a crash)."""
        return self._journal.failed_writes

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Replay what the spool holds (when the database answers) and what the
        journal kept, then start writing."""
        await asyncio.to_thread(self._spool.open)
        await asyncio.to_thread(self._journal.open)
        if self._pool is None:
            await self._open_pool()
        if self._spool.records and self._pool is not None:
            self._database_up = await self._replay()
            if not self._database_up:
                self._next_check = time.monotonic() + self._recheck_s
        if self._journal.leftovers:
            await self._replay_journal()
        self._task = asyncio.create_task(self._run(), name="tracking-writer")

    def record(self, record_id: uuid.UUID, step: Step, fields: dict[str, Any]) -> None:
        """Queue one lifecycle step of a record. Never blocks, never raises."""
        try:
            if self._closing:
                logger.error("tracking %s %s recorded after close; dropped", record_id, Step(step).name)
                return
            if type(step) is not Step:
                step = Step(step)
            write = self._pending.get(record_id)
            if write is None:
                write = self._pending[record_id] = RowWrite(first_seq=self._journal.seq + 1)
                self._links.capture(record_id)
            write.add(record_id, step, fields)
            self._started.note(record_id, step, write)
            stamp = write.fields.get(KEY_TIME) if step is Step.START else None
            write.last_seq = self._journal.add(record_id, step, fields, stamp)
            self._enqueued += 1
            self._pending_steps += 1
            self._fresh_steps += 1
            if self._pending_steps == 1:
                self._first_pending_at = time.monotonic()
                self._wake.set()
            elif self._fresh_steps == self._batch_size:
                self._wake.set()
            enqueued(step.name.lower())
        except Exception:
            logger.exception("tracking %s: step %r could not be queued", record_id, step)

    async def durable(self) -> None:
        """Return once every step recorded so far would outlive a crash of this
        process (it is in the journal, on local disk). Never raises."""
        await self._journal.sync()

    def durable_soon(self) -> None:
        """Start writing the steps recorded so far to the journal, without waiting."""
        self._journal.sync_soon()

    async def flush(self) -> None:
        """Return once every step recorded so far is in the database or the spool."""
        if self._task is None:
            raise RuntimeError("TrackingWriter.flush() before start()")
        target = self._enqueued
        if self._durable >= target:
            return
        self._flush_wanted = True
        self._wake.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._durable >= target)

    async def close(self) -> None:
        """Write (or spool) everything recorded, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self._journal.close(keep=not self._journal_whole)
        await asyncio.to_thread(self._spool.close)
        if self._dsn is not None and self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- the background task --------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if await self._turn():
                    return
            except Exception:
                # The task must outlive any surprise, or flush() would wait forever.
                logger.exception("tracking writer: unexpected failure; retrying")
                await asyncio.sleep(self._recheck_s)

    async def _turn(self) -> bool:
        """Wait for work, do it; True when closed and nothing is left."""
        self._wake.clear()
        if not self._pending and not self._retry_due():
            if self._closing:
                return True
            await self._wait(self._next_wake())
            if not self._pending and self._spool.records and not self._closing:
                await self._recover()
            return False
        due_at = self._first_pending_at + self._interval
        urgent = self._closing or self._flush_wanted or self._fresh_steps >= self._batch_size
        if not urgent and time.monotonic() < due_at:
            await self._wait(due_at - time.monotonic())
            return False
        await self._cycle()
        return False

    def _next_wake(self) -> float | None:
        """How long the idle writer may sleep: until the spool is due for another
        replay, or a write waiting for its row for another try."""
        waits = [self._recheck_s] if self._spool.records else []
        if self._waiting:
            retry_at = min(write.retry_at for write in self._waiting.values())
            waits.append(max(0.0, retry_at - time.monotonic()))
        return min(waits, default=None)

    async def _wait(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _cycle(self) -> None:
        everything = self._closing or self._flush_wanted
        writes = self._take_due()
        target = self._enqueued - self._pending_steps  # every step but the held ones
        self._flush_wanted = False
        if everything:
            await self._journal.sync()
        else:
            self._journal.sync_soon()  # the steps held back for the journal, for the next cycle
        if not writes:
            await self._advance(target)
            return
        links = self._links.take(writes)
        try:
            with batch_span("tracking write", links, {"tracking.records": len(writes)}):
                durable = await self._deliver(writes)
        except Exception:
            logger.exception("tracking writer: unexpected failure; writes kept for the next cycle")
            durable = False
        if not durable:
            self._put_back(writes)
            if self._closing:
                logger.error(
                    "tracking writer closing: %d steps could be neither written nor spooled; the journal keeps them",
                    self.queue_depth,
                )
                self._journal_whole = False
                self._pending, self._pending_steps = {}, 0
                target = self._enqueued
            else:
                await asyncio.sleep(self._recheck_s)  # back off: the database and the disk both failed
                return
        await self._advance(target)
        if self._journal_whole and self._journal.trim_due():
            # Every step not pending any more is in the database or the spool.
            pending = (write.first_seq for write in (*self._pending.values(), *self._waiting.values()))
            await self._journal.trim(min(pending, default=self._journal.seq + 1))

    async def _advance(self, target: int) -> None:
        """Every step up to `target` is written, spooled or waiting for its row."""
        async with self._progress:
            self._durable = max(self._durable, target)
            self._progress.notify_all()

    def _take_due(self) -> dict[uuid.UUID, RowWrite]:
        """Take the pending writes of this cycle, leaving pending those held back
        (a call under way) and those with a step not in the journal yet."""
        writes, self._pending = self._pending, {}
        self._pending_steps = self._fresh_steps = 0
        if self._waiting:
            writes = self._with_waiting(writes)
        if self._closing or self._flush_wanted:
            return writes
        held_since = time.monotonic() - self._hold_s
        journaled = self._journal.synced
        for record_id, write in writes.items():
            if write.last_seq > journaled or (write.unfinished() and write.started_at > held_since):
                self._pending[record_id] = write
                self._pending_steps += len(write.steps)
        if self._pending:
            self._first_pending_at = time.monotonic()
            for record_id in self._pending:
                del writes[record_id]
        return writes

    def _with_waiting(self, writes: dict[uuid.UUID, RowWrite]) -> dict[uuid.UUID, RowWrite]:
        """The writes of this cycle with the waiting ones due for another try. A
        record's later steps join its waiting write: they land after it."""
        for record_id, waiting in self._waiting.items():
            later = writes.pop(record_id, None)
            if later is not None and later is not waiting:
                waiting.absorb(later)
        now = time.monotonic()
        due = [record_id for record_id, write in self._waiting.items() if self._closing or write.retry_at <= now]
        for record_id in due:
            writes[record_id] = self._waiting.pop(record_id)
        return writes

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return any(self._closing or write.retry_at <= now for write in self._waiting.values())

    def _wait_for_row(self, record_id: uuid.UUID, write: RowWrite) -> bool:
        """Keep a write whose row is missing for another try; False once it has
        waited `row_wait_s` (the row is not coming), or when closing."""
        now = time.monotonic()
        if not write.give_up_at:
            write.give_up_at = now + self._row_wait_s
        if now >= write.give_up_at:
            return False
        if self._closing:
            self._journal_whole = False  # kept: the next start writes it again
            return False
        write.retry_at = now + max(self._interval, self._hold_s)
        earlier = self._waiting.setdefault(record_id, write)
        if earlier is not write:
            earlier.absorb(write)
        return True

    async def _deliver(self, writes: dict[uuid.UUID, RowWrite]) -> bool:
        """Write to the database, else to the spool; False when neither took them."""
        may_write = self._database_up or time.monotonic() >= self._next_check
        if not self._spool.records and self._pool is not None and may_write:
            left = await self._write(writes)
            if not left:
                return True
            writes = dict(left)
        try:
            await asyncio.to_thread(self._spool.append, [to_line(rid, w) for rid, w in writes.items()])
        except OSError:
            logger.exception("tracking spool %s: append failed", self._spool.directory)
            return False
        if not self._closing:
            await self._recover()
        return True

    def _put_back(self, writes: dict[uuid.UUID, RowWrite]) -> None:
        """Return undelivered writes ahead of whatever was recorded since."""
        steps = sum(len(w.steps) for w in writes.values())
        for record_id, later in self._pending.items():
            earlier = writes.get(record_id)
            if earlier is None:
                writes[record_id] = later
            else:
                earlier.absorb(later)
        self._pending = writes
        self._pending_steps += steps
        self._first_pending_at = time.monotonic()

    # -- database -------------------------------------------------------------

    async def _open_pool(self) -> bool:
        assert self._dsn is not None
        try:
            self._pool = await create_pool(self._dsn, min_size=1, max_size=self._parallelism)
        except UNAVAILABLE_ERRORS as exc:
            await self._went_down(exc)
            return False
        return True

    async def _recover(self) -> None:
        """While the spool holds writes: replay it when the database may be back."""
        if not self._database_up and time.monotonic() < self._next_check:
            return
        replayed = self._spool.records
        try:
            done = (self._pool is not None or await self._open_pool()) and await self._replay()
        except Exception:
            # Not a "database away" error (those never get here): a bad DSN, an
            # unreadable spool file... Logged; the spool stays for the next try.
            logger.exception("tracking spool replay failed")
            done = False
        if done:
            if not self._database_up:
                logger.warning("tracking database is back; %d spooled writes replayed", replayed)
            self._database_up = True
        else:
            self._next_check = time.monotonic() + self._recheck_s

    async def _replay(self) -> bool:
        """Apply the spool oldest first; delete each segment once all of it is applied."""
        await asyncio.to_thread(self._spool.seal)
        chunk_lines = self._batch_size * self._parallelism
        for segment in await asyncio.to_thread(self._spool.segments):
            lines = self._spool.read(segment, chunk_lines)
            try:
                while (chunk := await asyncio.to_thread(next, lines, None)) is not None:
                    if await self._write(_coalesce(chunk, segment)):
                        return False
            finally:
                lines.close()
            await asyncio.to_thread(self._spool.remove, segment)
        return True

    async def _replay_journal(self) -> None:
        """Write again what an earlier process journaled: after its spool (older
        writes), before anything this process records. A segment is deleted
        once all of it was written; if neither the database nor the spool takes
        it, it stays for the next start."""
        chunk_steps = self._batch_size * self._parallelism
        for segment in list(self._journal.leftovers):
            writes: dict[uuid.UUID, RowWrite] = {}
            steps = 0
            lines = self._journal.read(segment)
            try:
                while (chunk := await asyncio.to_thread(next, lines, None)) is not None:
                    for line in chunk:
                        steps += _fold_journal_line(writes, line, segment)
                    if steps >= chunk_steps:
                        if not await self._deliver(writes):
                            return
                        writes, steps = {}, 0
            finally:
                lines.close()
            if writes and not await self._deliver(writes):
                return
            await self._journal.discard(segment)
            logger.info("tracking journal %s written again", segment.name)

    async def _write(self, writes: dict[uuid.UUID, RowWrite]) -> Rows:
        """Write all rows; return those that must wait because the database is away."""
        rows = list(writes.items())
        size = self._batch_size
        tasks: list[asyncio.Task[Rows]] = []
        in_flight: set[asyncio.Task[Rows]] = set()
        for i in range(0, len(rows), size):
            # Encoded while the chunks before it are written: Python and the
            # database work at the same time.
            chunk = _Chunk(rows[i : i + size])
            while len(in_flight) >= self._parallelism:
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self._write_chunk(chunk))
            tasks.append(task)
            in_flight.add(task)
        results = await asyncio.gather(*tasks)
        return [row for left in results for row in left]

    async def _write_chunk(self, chunk: _Chunk) -> Rows:
        rows = chunk.rows
        try:
            async with self._slots:
                missing = await self._execute(chunk)
        except UNAVAILABLE_ERRORS as exc:
            await self._went_down(exc)
            return rows
        except _REJECTED_ERRORS as exc:
            return await self._isolate(rows, exc)
        except asyncpg.PostgresError as exc:
            # Missing table, missing privilege...: every write would fail; keep them until fixed.
            await self._went_down(exc)
            return rows
        writes = dict(rows)
        for record_id, steps in missing:
            if not self._wait_for_row(record_id, writes[record_id]):
                self._report_missing(record_id, steps)
        return []

    async def _isolate(self, rows: Rows, exc: Exception) -> Rows:
        """A chunk was refused for its values: find the bad rows, write the rest."""
        if len(rows) == 1:
            record_id, write = rows[0]
            self._rejected_rows += 1
            logger.error(
                "tracking %s steps %s refused by the database and dropped: %s: %s",
                record_id,
                write.steps,
                type(exc).__name__,
                exc,
            )
            return []
        for index, row in enumerate(rows):
            if await self._write_chunk(_Chunk([row])):
                return rows[index:]
        return []

    async def _execute(self, chunk: _Chunk) -> list[tuple[uuid.UUID, list[int]]]:
        """One transaction for the chunk; the records whose row was missing."""
        try:
            return await self._apply(chunk, fresh=True)
        except asyncpg.UniqueViolationError:
            # A started row is there already (a spool replayed again): COPY
            # cannot take it and the transaction is void, so upsert the chunk.
            return await self._apply(chunk, fresh=False)

    async def _apply(self, chunk: _Chunk, *, fresh: bool) -> list[tuple[uuid.UUID, list[int]]]:
        """Write the groups in one transaction, started rows by COPY when `fresh`
        and none of them continues a row already there."""
        missing: list[tuple[uuid.UUID, list[int]]] = []
        assert self._pool is not None
        async with self._pool.acquire(timeout=self._timeout) as conn, conn.transaction():
            if await self._continue_rows(conn, chunk):
                fresh = False  # COPY cannot take a row that is there: upserts instead
            for (start, columns), group in chunk.groups.items():
                sql, order = statement(start, columns)
                if start and fresh:
                    data = source(chunk.copy_data(start, columns))
                    await conn.copy_to_table(TABLE, source=data, columns=("id", *order), timeout=self._timeout)
                    continue
                found = await conn.fetch(sql, *arguments(group, order), timeout=self._timeout)
                if start:
                    continue
                there = {row[0] for row in found}
                left = [(rid, values) for rid, values in group if rid not in there]
                if left and KEY_TIME in columns:
                    # Keyed by a START time that is not the row's (its call began on
                    # another replica): by id alone then, looking in every partition.
                    sql, order = statement(False, columns - {KEY_TIME})
                    there |= {row[0] for row in await conn.fetch(sql, *arguments(left, order), timeout=self._timeout)}
                missing.extend((rid, chunk.steps[rid]) for rid, _ in group if rid not in there)
        return missing

    async def _continue_rows(self, conn: asyncpg.Connection, chunk: _Chunk) -> bool:
        """Give each START of the chunk whose record has its row already (a retried
        Authorize, a spool or journal written again) that row's time, so the row
        is continued rather than doubled; True when there was any."""
        started = [(rid, values) for (start, _), group in chunk.groups.items() if start for rid, values in group]
        if not started:
            return False
        times = [values[KEY_TIME] for _, values in started]
        rows = await conn.fetch(
            CONTINUED,
            [rid for rid, _ in started],
            min(times) - CONTINUE_WITHIN,
            max(times) + CONTINUE_WITHIN,
            timeout=self._timeout,
        )
        began = {row[0]: row[1] for row in rows}
        for rid, values in started:
            if rid in began:
                values[KEY_TIME] = began[rid]
                self._started.began(rid, began[rid])
        return bool(began)

    async def _went_down(self, exc: BaseException) -> None:
        if self._database_up:
            logger.warning(
                "tracking database unavailable (%s: %s); spooling to %s",
                type(exc).__name__,
                exc,
                self._spool.directory,
            )
        self._database_up = False
        self._next_check = time.monotonic() + self._recheck_s
        if self._pool is not None:
            # Stale connections would fail the next attempt too; reconnect instead.
            await self._pool.expire_connections()

    def _report_missing(self, record_id: uuid.UUID, steps: list[int]) -> None:
        """Counted (GetStatus) and logged: never raised into the request path."""
        for step in steps:
            self._missing_rows += 1
            logger.warning("tracking %s %s: no row to update", record_id, Step(step).name)


class _Chunk:
    """The row writes of one transaction, encoded and grouped by statement shape,
    with the COPY data of the rows they start."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.groups: Groups = {}
        self.steps: dict[uuid.UUID, list[int]] = {}
        for record_id, write in rows:
            values = write.encoded(record_id)
            if write.start or values.keys() - {KEY_TIME}:  # else steps that set nothing
                self.groups.setdefault((write.start, frozenset(values)), []).append((record_id, values))
            self.steps[record_id] = write.steps
        self._copies = {
            shape: copy_data(group, statement(*shape)[1]) for shape, group in self.groups.items() if shape[0]
        }

    def copy_data(self, start: bool, columns: frozenset[str]) -> bytes:
        return self._copies[(start, columns)]


def _fold_journal_line(writes: dict[uuid.UUID, RowWrite], line: str, segment: Path) -> int:
    """Fold the steps of a journal line into the writes, per record in order;
    how many steps it held."""
    try:
        steps = journal_steps(line)
    except ValueError as exc:
        logger.error("tracking journal %s: unreadable line skipped: %s", segment.name, exc)
        return 0
    for record_id, step, fields in steps:
        write = writes.get(record_id)
        if write is None:
            write = writes[record_id] = RowWrite()
        write.add(record_id, step, fields)
    return len(steps)


def _coalesce(lines: list[str], segment: Path) -> dict[uuid.UUID, RowWrite]:
    """The spool lines of a chunk, folded per record in line order."""
    writes: dict[uuid.UUID, RowWrite] = {}
    for line in lines:
        try:
            record_id, write = from_line(line)
        except ValueError as exc:
            logger.error("tracking spool %s: unreadable line skipped: %s", segment.name, exc)
            continue
        earlier = writes.get(record_id)
        if earlier is None:
            writes[record_id] = write
        else:
            earlier.absorb(write)
    return writes
