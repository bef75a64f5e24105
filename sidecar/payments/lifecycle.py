"""The tracking lifecycle of one paid-route call, in the order its steps must land."""

from __future__ import annotations

import enum


class Step(enum.IntEnum):
    START = 1
    REQUEST = 2
    VERIFICATION = 3
    SETTLEMENT = 4
    RELEASE = 5
    FINALIZE = 6
