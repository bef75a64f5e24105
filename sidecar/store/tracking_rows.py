"""Row writes of the tracking table: the steps of one record coalesced into the
single write that has the same effect as applying them in order, plus the line
format that carries a row write through the spool.

Values are checked against the column types of sidecar/store/schema.py when a
step is recorded, so a bad value is dropped there (with a warning naming the
column, never the value) instead of failing a whole batch later. jsonb values
are kept as the caller's objects and serialised once per row write, when it is
written: a value that a later step replaces, or metadata merged from several
steps, costs one serialisation, not one per step. Callers hand their values
over: they must not change them after recording.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..payments.lifecycle import Step
from .schema import COLUMNS

logger = logging.getLogger(__name__)

METADATA = "metadata"  # merged (jsonb ||) by every write; every other column is replaced
KEY_TIME = "timestamp"  # the partition key: set at START, never changed by a later step

_INT32 = range(-(2**31), 2**31)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return _without_nul(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError("text expected")


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError("datetime expected")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("bool expected")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _INT32:
        raise TypeError("32-bit int expected")
    return value


def _encode_json(value: Any) -> str:
    # orjson: JSON encoding was a third of the writer's Python time with the
    # standard library. Non-string keys become strings, as json.dumps does; it
    # writes NaN and infinities as null where json refused them (jsonb cannot
    # hold them either way), and raises a TypeError for what it cannot encode.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _jsonb(value: Any) -> Any:
    if not isinstance(value, dict | list | str | int | float):
        raise TypeError("JSON value expected")
    return value


def _metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("metadata must be an object")
    return value


def _varchar(length: int) -> Callable[[Any], str]:
    return lambda value: _text(value)[:length]


_BY_TYPE: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "timestamp with time zone": _timestamp,
    "boolean": _boolean,
    "integer": _integer,
    "jsonb": _jsonb,
}
# Python types taken as they are for a column type (the common case, checked first).
_EXACT_BY_TYPE = {"text": str, "boolean": bool, "jsonb": dict, "integer": int, "timestamp with time zone": datetime}


def _converter(name: str, sql_type: str, max_length: int | None) -> Callable[[Any], Any]:
    if name == METADATA:
        return _metadata
    if max_length is not None:
        return _varchar(max_length)
    return _BY_TYPE[sql_type]


# Column -> checker/normaliser, for every column a step may set ("id" is the record id).
_CONVERTERS = {c.name: _converter(c.name, c.sql_type, c.max_length) for c in COLUMNS if c.name != "id"}
_EXACT = {c.name: _EXACT_BY_TYPE[c.sql_type] for c in COLUMNS if c.sql_type in _EXACT_BY_TYPE and c.name != METADATA}
_NOT_NULL = frozenset(c.name for c in COLUMNS if not c.nullable)
_TIMESTAMP_COLUMNS = frozenset(c.name for c in COLUMNS if c.sql_type == "timestamp with time zone")
_JSONB_COLUMNS = frozenset(c.name for c in COLUMNS if c.sql_type == "jsonb")
_JSONB_FIELDS = tuple(c.name for c in COLUMNS if c.sql_type == "jsonb" and c.name != METADATA)


@dataclass(slots=True)
class RowWrite:
    """What the steps of one record seen so far do to its row."""

    steps: list[int] = field(default_factory=list)
    start: bool = False  # a START is among the steps: the row is inserted
    started_at: float = 0.0  # time.monotonic() of the START step, when `start`
    fields: dict[str, Any] = field(default_factory=dict)  # column -> value; jsonb as Python objects
    metadata: list[dict[str, Any]] = field(default_factory=list)  # merged left to right, like jsonb ||
    # Journal numbers of its first and last steps (sidecar/store/journal.py); 0 when not journaled.
    first_seq: int = 0
    last_seq: int = 0
    # time.monotonic() of its next try and of the end of its wait, while its row
    # is missing (begun on another replica, not written yet); 0 otherwise.
    retry_at: float = 0.0
    give_up_at: float = 0.0

    def add(self, record_id: uuid.UUID, step: Step, fields: dict[str, Any]) -> None:
        """Fold one step in; unusable fields are dropped with a warning."""
        mine = self.fields
        for name, value in fields.items():
            kind = _EXACT.get(name)
            if type(value) is kind:
                if kind is str:
                    if "\x00" in value:
                        value = _without_nul(value)
                elif kind is int:
                    if value not in _INT32:
                        self._add_checked(record_id, step, name, value)
                        continue
                elif kind is datetime and value.tzinfo is None:
                    value = value.replace(tzinfo=UTC)
                mine[name] = value
            elif name == METADATA and type(value) is dict:
                self.metadata.append(value)
            else:
                self._add_checked(record_id, step, name, value)
        # A verified payment has no verification error (the CHECK constraint says the
        # same); an error means not verified. Either way the pair stays consistent.
        if fields.get("payment_verified") is True:
            mine["verification_error"] = None
        elif fields.get("verification_error") is not None and mine.get("verification_error") is not None:
            mine["payment_verified"] = False
        self.steps.append(step)
        if step is Step.START:
            self.start = True
            self.started_at = time.monotonic()
            # Stamped now, not when the row reaches the database (maybe after a spool replay).
            mine.setdefault(KEY_TIME, datetime.now(UTC))
            mine.setdefault("request", {})

    def _add_checked(self, record_id: uuid.UUID, step: Step, name: str, value: Any) -> None:
        convert = _CONVERTERS.get(name)
        if convert is None:
            logger.warning("tracking %s %s: unknown column %r ignored", record_id, step.name, name)
            return
        if value is None:
            if name in _NOT_NULL:
                logger.warning("tracking %s %s: %s may not be null; ignored", record_id, step.name, name)
            elif name != METADATA:
                self.fields[name] = None
            return
        try:
            converted = convert(value)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.warning(
                "tracking %s %s: %s ignored, unusable %s (%s)", record_id, step.name, name, type(value).__name__, exc
            )
            return
        if name == METADATA:
            self.metadata.append(converted)
        else:
            self.fields[name] = converted

    def unfinished(self) -> bool:
        """The row is inserted by this write and its call has not finished yet."""
        return self.start and self.steps[-1] != Step.FINALIZE

    def absorb(self, later: RowWrite) -> None:
        """Fold a later write of the same record into this one."""
        self.steps.extend(later.steps)
        if later.start and not self.start:
            self.start, self.started_at = True, later.started_at
        began = self.fields.get(KEY_TIME)
        self.fields.update(later.fields)
        if began is not None:  # a START again (a retried Authorize) keeps the time the call began
            self.fields[KEY_TIME] = began
        self.metadata.extend(later.metadata)
        self.last_seq = max(self.last_seq, later.last_seq)

    def encoded(self, record_id: uuid.UUID) -> dict[str, Any]:
        """Column -> value as sent to PostgreSQL: jsonb as JSON text, metadata
        merged. A value that cannot be serialised is dropped with a warning."""
        values = dict(self.fields)  # text values are free of U+0000 since add()
        for name in _JSONB_FIELDS:
            value = values.get(name)
            if value is not None:
                text = _encoded_json(record_id, name, value)
                if text is None:
                    del values[name]
                else:
                    values[name] = text
        if self.metadata:
            merged = self.metadata[0]
            if len(self.metadata) > 1:
                merged = {}
                for fragment in self.metadata:
                    merged.update(fragment)
            text = _encoded_json(record_id, METADATA, merged)
            if text is not None:
                values[METADATA] = text
        return values


class StartTimes:
    """The START time of recent records, so that a later step's write, which
    updates the row, names its partition too (sidecar/store/tracking_sql.py),
    and a START recorded again for a record keeps its first time (the row is
    its id and that time). A record's time is forgotten at its FINALIZE, and the
    oldest first past `capacity` (records finished by another replica, or never
    finished). A step of a record whose time is not known (started by another
    replica, or before a restart) still finds its row, looking in every partition."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._times: dict[uuid.UUID, datetime] = {}  # in START order

    def __len__(self) -> int:
        return len(self._times)

    def began(self, record_id: uuid.UUID, moment: datetime) -> None:
        """The record's row turned out to have begun at `moment` (a retried
        Authorize whose first attempt started it elsewhere)."""
        if record_id in self._times:
            self._times[record_id] = moment

    def note(self, record_id: uuid.UUID, step: Step, write: RowWrite) -> None:
        """Called with the record's pending write after each step is folded in.
        Most steps join a write that inserts the row (the call is held back until
        it ends): those cost two comparisons."""
        if step is Step.START:
            fields = write.fields
            fields[KEY_TIME] = self._times.setdefault(record_id, fields[KEY_TIME])
            if len(self._times) > self._capacity:
                del self._times[next(iter(self._times))]
        elif step is Step.FINALIZE:
            started = self._times.pop(record_id, None)
            if started is not None and not write.start:
                write.fields.setdefault(KEY_TIME, started)
        elif not write.start:
            started = self._times.get(record_id)
            if started is not None:
                write.fields.setdefault(KEY_TIME, started)


def _without_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000: keep the record, with U+FFFD
    in its place (a client's `%00` must not cost the whole record)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def _encoded_json(record_id: uuid.UUID, column: str, value: Any) -> str | None:
    try:
        text = _encode_json(value)
        # JSON escapes U+0000 as \u0000; only then is the slower clean-up needed.
        return _encode_json(_without_nul(value)) if "\\u0000" in text else text
    except (TypeError, ValueError, RecursionError) as exc:
        logger.warning("tracking %s: %s ignored, not serialisable as JSON (%s)", record_id, column, exc)
        return None


def to_line(record_id: uuid.UUID, write: RowWrite) -> str:
    """One spool line: JSON with the id and timestamps as strings, jsonb as JSON text."""
    fields = write.encoded(record_id)
    for name in _TIMESTAMP_COLUMNS.intersection(fields):
        if fields[name] is not None:
            fields[name] = fields[name].isoformat()
    return _encode_json({"id": str(record_id), "steps": write.steps, "start": write.start, "fields": fields})


def journal_line(entries: list[tuple[Any, ...]]) -> bytes:
    """One journal line (newline included) for the steps of one group write:
    a JSON array of [record id, step, fields] and, for a START, the timestamp
    it stamped. The fields go as the caller gave them (checked again when the
    line is replayed, as when they were recorded); a value JSON cannot carry
    is left out with a warning, as the database write leaves it out."""
    try:
        return orjson.dumps(entries, option=_JOURNAL_OPTIONS)
    except (TypeError, ValueError, RecursionError):
        return orjson.dumps([_encodable(entry) for entry in entries], option=_JOURNAL_OPTIONS)


_JOURNAL_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def _encodable(entry: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        orjson.dumps(entry, option=_JOURNAL_OPTIONS)
        return entry
    except (TypeError, ValueError, RecursionError):
        pass
    record_id, step, fields, *stamp = entry
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        try:
            orjson.dumps({name: value}, option=_JOURNAL_OPTIONS)
        except (TypeError, ValueError, RecursionError) as exc:
            logger.warning("tracking %s: %s not journaled, not serialisable as JSON (%s)", record_id, name, exc)
            continue
        kept[name] = value
    return (record_id, step, kept, *stamp)


def journal_steps(line: str) -> list[tuple[uuid.UUID, Step, dict[str, Any]]]:
    """The steps a journal line carries, in order, with the START's timestamp
    back among its fields; ValueError when the line is not a journal line."""
    try:
        steps = []
        for record_id, step, fields, *stamp in orjson.loads(line):
            fields = dict(fields)
            for name in _TIMESTAMP_COLUMNS.intersection(fields):
                if isinstance(fields[name], str):
                    with contextlib.suppress(ValueError):  # else dropped with a warning when replayed
                        fields[name] = datetime.fromisoformat(fields[name])
            if stamp:
                fields["timestamp"] = datetime.fromisoformat(stamp[0])
            steps.append((uuid.UUID(record_id), Step(step), fields))
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a tracking journal line: {exc}") from exc
    return steps


def from_line(line: str) -> tuple[uuid.UUID, RowWrite]:
    """The row write a spool line carries; ValueError when the line is not one."""
    try:
        data = orjson.loads(line)
        record_id = uuid.UUID(data["id"])
        steps = [int(step) for step in data["steps"]]
        start = bool(data["start"])
        fields: dict[str, Any] = {}
        metadata: list[dict[str, Any]] = []
        for name, value in dict(data["fields"]).items():
            if name not in _CONVERTERS:
                raise ValueError(f"unknown column {name!r}")
            if value is not None:
                if name in _JSONB_COLUMNS:
                    value = orjson.loads(value)
                elif name in _TIMESTAMP_COLUMNS:
                    value = datetime.fromisoformat(value)
            if name != METADATA:
                fields[name] = value
            elif value is not None:
                metadata.append(_metadata(value))
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a tracking spool line: {exc}") from exc
    return record_id, RowWrite(steps=steps, start=start, fields=fields, metadata=metadata)
