"""Verify with fallback (DESIGN §5): try candidates best first; move on only when
a facilitator failed to answer properly, never after a clean isValid:false."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..constants import Reason
from .ports import Attempt, Facilitator

_REASON_CODE = re.compile(r"^[a-z0-9_]{1,64}$")


@dataclass(frozen=True)
class VerifyResult:
    facilitator: Facilitator | None  # who answered cleanly; None when nobody did
    valid: bool
    invalid_reason: str
    payer: str
    attempts: tuple[Attempt, ...]
    extra: dict[str, Any] | None = None  # the answer's `extra` (batch-settlement: the channel's state)


def sanitize_reason(value: Any, fallback: str) -> str:
    """Pass on a facilitator's reason only when it is a plain x402 reason code."""
    return value if isinstance(value, str) and _REASON_CODE.match(value) else fallback


async def verify_with_fallback(candidates: list[Facilitator], body: dict[str, Any]) -> VerifyResult:
    attempts: list[Attempt] = []
    for facilitator in candidates:
        answer = await facilitator.verify(body)
        attempts.append(answer.attempt)
        if not answer.ok:
            continue
        data = answer.data or {}
        payer = data.get("payer") if isinstance(data.get("payer"), str) else ""
        valid = data["isValid"] is True
        reason = "" if valid else sanitize_reason(data.get("invalidReason"), Reason.INVALID_PAYMENT)
        extra = data.get("extra") if isinstance(data.get("extra"), dict) else None
        return VerifyResult(facilitator, valid, reason, payer, tuple(attempts), extra)
    return VerifyResult(None, False, "", "", tuple(attempts))
