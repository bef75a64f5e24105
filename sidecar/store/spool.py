"""An append-only, fsync'd spool of text lines on local disk, kept in numbered
segment files and consumed oldest first.

The tracking writer puts row writes here while PostgreSQL is unreachable. A
segment is deleted only after every line in it was applied, so a crash during
replay replays the segment again (the writes are idempotent) and loses nothing.

All methods block on file I/O: call them from a worker thread, one at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

_PREFIX = "tracking-"
_SUFFIX = ".jsonl"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class SpoolInUse(RuntimeError):
    """Another process owns the spool directory."""


class Spool:
    def __init__(self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._active: BinaryIO | None = None
        self._active_path: Path | None = None
        self._active_size = 0
        self._next_number = 1
        self._lines: dict[Path, int] = {}  # line count per segment on disk
        self._bytes: dict[Path, int] = {}
        self._lock: int | None = None
        self.records = 0
        self.bytes = 0

    def open(self) -> None:
        """Find the segments a previous process left behind and count their lines."""
        # Tracking rows hold no signatures, but payers and request details: owner only.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # One owner per directory: two processes would replay and delete each other's segments.
        self._lock = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise SpoolInUse(f"tracking spool {self.directory} is in use by another process") from None
        for path in self.segments():
            with path.open("rb") as handle:
                self._lines[path] = sum(1 for line in handle if line.strip())
            self._bytes[path] = path.stat().st_size
            self._next_number = max(self._next_number, (_number(path) or 0) + 1)
        self.records = sum(self._lines.values())
        self.bytes = sum(self._bytes.values())
        if self.records:
            logger.info("%s holds %d lines in %d segments", self.directory, self.records, len(self._lines))

    def segments(self) -> list[Path]:
        """Segment files on disk, oldest first."""
        found = self.directory.glob(f"{_PREFIX}*{_SUFFIX}")
        return sorted((path for path in found if _number(path) is not None), key=_number)

    @property
    def active_segment(self) -> Path | None:
        """The segment appends go to, None until the next append opens one."""
        return self._active_path

    def append(self, lines: list[str]) -> None:
        """Append lines (no newlines inside) and fsync before returning."""
        if not lines:
            return
        self.append_raw(("\n".join(lines) + "\n").encode("utf-8"), len(lines))

    def append_raw(self, data: bytes, lines: int) -> Path:
        """Append `lines` whole lines already encoded (each ends with a newline),
        fsync before returning; the segment they went to."""
        if self._active is None or self._active_size >= self._segment_bytes:
            self._open_segment()
        assert self._active is not None and self._active_path is not None
        self._active.write(data)
        self._active.flush()
        os.fsync(self._active.fileno())
        self._active_size += len(data)
        self._lines[self._active_path] += lines
        self._bytes[self._active_path] += len(data)
        self.records += lines
        self.bytes += len(data)
        return self._active_path

    def seal(self) -> None:
        """Close the segment being appended to; the next append starts a new one."""
        if self._active is not None:
            self._active.close()
            self._active = None
            self._active_path = None

    def read(self, segment: Path, chunk_lines: int) -> Iterator[list[str]]:
        """The lines of a sealed segment in order, chunk_lines at a time. A torn
        last line (the process died mid-append, before the fsync that would have
        acknowledged it) is skipped."""
        chunk: list[str] = []
        with segment.open("rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    logger.warning("tracking spool %s ends with a torn line; skipped", segment.name)
                    break
                line = raw.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                chunk.append(line)
                if len(chunk) >= chunk_lines:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def remove(self, segment: Path) -> None:
        """Delete a segment whose every line has been applied."""
        if segment == self._active_path:
            self.seal()
        segment.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        self.records -= self._lines.pop(segment, 0)
        self.bytes -= self._bytes.pop(segment, 0)

    def close(self) -> None:
        self.seal()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def _open_segment(self) -> None:
        self.seal()
        # Never append to a segment found on disk: it may end with a torn line.
        path = self.directory / f"{_PREFIX}{self._next_number:012d}{_SUFFIX}"
        self._next_number += 1
        self._active = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self._active_path = path
        self._active_size = 0
        self._lines[path] = 0
        self._bytes[path] = 0
        _fsync_directory(self.directory)


def _number(path: Path) -> int | None:
    digits = path.name[len(_PREFIX) : -len(_SUFFIX)]
    return int(digits) if digits.isdigit() else None


def _fsync_directory(directory: Path) -> None:
    # Makes a created or deleted file name itself durable, not only its contents.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
