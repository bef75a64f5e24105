"""Sampling profiles of a service under load, read from py-spy's raw output
(collapsed stacks: `frame;frame;... count`, frames `function (path)`).

A service is profiled by starting it under `py-spy record` (attaching to a running
process is not possible everywhere; spawning is). Idle samples are left out by
py-spy, and by `summarise` those of a thread parked in a wait (on a busy machine a
woken thread waiting for a CPU still looks active) and import-time samples, so
what remains is the work done for requests. Time is attributed three ways: self time by component (a package of
ours like `sidecar/payments`, a third-party package, or a stdlib module), self time
by function, and inclusive time of our own functions.
"""

from __future__ import annotations

import collections
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .services import ROOT

_SITE = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
_STDLIB = sysconfig.get_paths()["stdlib"]
_OURS = ("sidecar", "gateway", "paysidecar", "devnet", "bench")
_IMPORTING = "_find_and_load"
# (component, function) of leaf frames where a thread waits for work, not works.
_WAITING = frozenset({
    ("selectors", "EpollSelector.select"),
    ("selectors", "PollSelector.select"),
    ("concurrent", "_worker"),
    ("threading", "Condition.wait"),
    ("threading", "Event.wait"),
    ("queue", "Queue.get"),
})  # fmt: skip


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, else on PATH (None: not installed)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_argv(executable: str, output: Path, argv: list[str], rate: int = 200) -> list[str]:
    return [
        executable, "record", "--format", "raw", "--nolineno", "--full-filenames", "--nonblocking",
        "--rate", str(rate), "--output", str(output), "--", *argv,
    ]  # fmt: skip


@dataclass(frozen=True)
class Frame:
    function: str
    path: str

    @property
    def component(self) -> str:
        """What the code belongs to: `sidecar/payments`, `grpc`, `asyncio`, ..."""
        for site in _SITE:
            if self.path.startswith(site):
                return Path(self.path[len(site) :].lstrip("/")).parts[0].removesuffix(".py")
        if self.path.startswith(str(ROOT)):
            parts = Path(self.path).relative_to(ROOT).parts
            return "/".join(parts[:2]).removesuffix(".py") if len(parts) > 2 else parts[0].removesuffix(".py")
        if self.path.startswith(_STDLIB):
            return Path(self.path[len(_STDLIB) :].lstrip("/")).parts[0].removesuffix(".py")
        return self.path or "?"

    @property
    def ours(self) -> bool:
        return self.path.startswith(str(ROOT)) and Path(self.path).relative_to(ROOT).parts[0] in _OURS

    @property
    def short(self) -> str:
        if self.path.startswith(str(ROOT)):
            where = str(Path(self.path).relative_to(ROOT))
        else:
            where = f"{self.component}:{Path(self.path).name}"
        return f"{self.function} ({where})"


def _parse_frame(text: str) -> Frame:
    function, _, rest = text.rpartition(" (")
    if not function:
        return Frame(text, "")
    return Frame(function, rest.removesuffix(")"))


@dataclass(frozen=True)
class Profile:
    name: str
    samples: int
    by_component: list[tuple[str, int]]
    self_time: list[tuple[Frame, int]]
    inclusive_ours: list[tuple[Frame, int]]

    def share(self, count: int) -> str:
        return f"{100 * count / self.samples:.1f}%" if self.samples else "-"


def summarise(name: str, raw: str, top: int = 12) -> Profile:
    components: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[Frame] = collections.Counter()
    inclusive: collections.Counter[Frame] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_parse_frame(part) for part in stack.split(";")]
        leaf = frames[-1]
        if (leaf.component, leaf.function) in _WAITING or any(frame.function == _IMPORTING for frame in frames):
            continue
        count = int(count_text)
        total += count
        leaves[leaf] += count
        components[leaf.component] += count
        for frame in set(frames):
            if frame.ours:
                inclusive[frame] += count
    # Entry points that hold every sample (main, serve) say nothing.
    telling = [(frame, count) for frame, count in inclusive.most_common() if count < 0.95 * total]
    return Profile(name, total, components.most_common(top), leaves.most_common(top), telling[:top])


def markdown(profile: Profile) -> str:
    lines = [f"**{profile.name}** — {profile.samples} samples of busy time", ""]
    lines.append("Self time by component: " + ", ".join(
        f"{component} {profile.share(count)}" for component, count in profile.by_component
    ) + ".")  # fmt: skip
    lines += ["", "| self | function |", "|---:|---|"]
    lines += [f"| {profile.share(count)} | `{frame.short}` |" for frame, count in profile.self_time]
    lines += ["", "| inclusive | our function |", "|---:|---|"]
    lines += [f"| {profile.share(count)} | `{frame.short}` |" for frame, count in profile.inclusive_ours]
    return "\n".join(lines)
