"""CPU time the processes of a run spend, read from /proc (Linux; elsewhere every
figure is missing). Charged per successful request, it tells what getting paid
costs each side independently of the shared devnet facilitator, which on one
small machine caps every paid target at the same rate."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Snapshot = dict[str, dict[int, float]]  # group -> pid -> CPU seconds so far


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def name(pid: int) -> str | None:
    """The process's command name (`comm`), None if there is no such process here."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return None


def parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def with_children(pid: int) -> list[int]:
    """`pid` and its direct children (a PostgreSQL postmaster and its backends)."""
    pids = [pid]
    for entry in PROC.glob("[0-9]*"):
        if parent(int(entry.name)) == pid:
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """Snapshots of CPU seconds by group; a group names the pids it covers now."""

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self._groups = dict(groups)

    def snapshot(self) -> Snapshot:
        taken: Snapshot = {}
        for name, pids in self._groups.items():
            seconds = {pid: cpu_seconds(pid) for pid in pids()}
            taken[name] = {pid: value for pid, value in seconds.items() if value is not None}
        return taken

    @staticmethod
    def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
        """CPU seconds per group between two snapshots (processes present in both)."""
        return {
            name: sum(max(0.0, after[name][pid] - start) for pid, start in pids.items() if pid in after.get(name, {}))
            for name, pids in before.items()
        }
