"""Misbehaviour on purpose: faults a devnet facilitator injects into its answers.

One fault per stage (verify | settle | supported) may be armed at a time, either
in-process (`Faults.arm`) or over HTTP (`POST /_devnet/faults`). Modes:

- delay            sleep `delay_ms`, then answer normally
- status           answer `status` with `body`
- html             200 text/html page (a proxy's error page, a captive portal)
- garbage          200 application/json whose body is not JSON
- truncated        the real JSON answer cut in half
- settlement_pending  settle answers success:false, errorReason settlement_pending and the
                   broadcast transaction; mined after `mine_after_ms`, or at once with
                   `after_transfer`, else never
- no_success       the real answer without its `success` (settle) / `isValid` (verify) key
- success_status   the real answer, sent with HTTP `status`
- invalid          verify: isValid false, invalid_exact_evm_payload_signature;
                   settle: success false with the same reason
                   (batch-settlement: invalid_batch_settlement_evm_voucher_signature)
- hang             never answer (released when the server shuts down, at most HANG_MAX_MS)
- drop             close the connection without an answer

Faults apply to every scheme's verify and settle alike, batch-settlement claims,
settles and refunds included. `delay_ms` is slept before any mode. The modes built on the real answer (delay,
truncated, no_success, success_status) do the real verify/settle, so a settle moves the
money; settlement_pending broadcasts the real transfer; the others do the real work only
with `after_transfer: true` ("charged, answer lost"). `times: N` disarms the fault after
N uses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Stage = Literal["verify", "settle", "supported"]
Mode = Literal[
    "delay",
    "status",
    "html",
    "garbage",
    "truncated",
    "settlement_pending",
    "no_success",
    "success_status",
    "invalid",
    "hang",
    "drop",
]

# Modes whose answer is built from the real verify/settle result.
REAL_ANSWER_MODES = frozenset({"delay", "truncated", "no_success", "success_status"})

# Upper bound of any wait a fault imposes, so a server can always shut down.
HANG_MAX_MS = 120_000

_PAYMENT_STAGES = ("verify", "settle")


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage
    mode: Mode
    status: int = Field(503, ge=200, le=599)
    body: str = ""
    delay_ms: int = Field(0, ge=0, le=HANG_MAX_MS)
    times: int | None = Field(None, ge=1)
    after_transfer: bool = False
    mine_after_ms: int = Field(0, ge=0, le=HANG_MAX_MS)

    @model_validator(mode="after")
    def _fits_stage(self) -> Fault:
        if self.mode == "settlement_pending" and self.stage != "settle":
            raise ValueError("mode settlement_pending applies to stage settle only")
        if self.mode in ("invalid", "no_success") and self.stage not in _PAYMENT_STAGES:
            raise ValueError(f"mode {self.mode} applies to stages verify and settle only")
        if self.after_transfer and self.stage != "settle":
            raise ValueError("after_transfer applies to stage settle only")
        if self.mine_after_ms and self.mode != "settlement_pending":
            raise ValueError("mine_after_ms applies to mode settlement_pending only")
        return self


_FAULT_LIST = TypeAdapter(list[Fault])


def parse_faults(data: Any) -> list[Fault]:
    """One fault object or a list of them, from JSON. Raises pydantic.ValidationError."""
    return _FAULT_LIST.validate_python(data if isinstance(data, list) else [data])


class Faults:
    """The faults armed on one facilitator; mutable while it runs."""

    def __init__(self, *faults: Fault) -> None:
        self._armed: dict[str, tuple[Fault, int | None]] = {}
        self.arm(*faults)

    def arm(self, *faults: Fault) -> None:
        """Arm each fault, replacing whatever was armed for its stage."""
        for fault in faults:
            self._armed[fault.stage] = (fault, fault.times)

    def clear(self, stage: Stage | None = None) -> None:
        if stage is None:
            self._armed.clear()
        else:
            self._armed.pop(stage, None)

    def take(self, stage: Stage) -> Fault | None:
        """The fault to apply to this request at `stage`, counting one use."""
        armed = self._armed.get(stage)
        if armed is None:
            return None
        fault, remaining = armed
        if remaining is None:
            return fault
        if remaining <= 1:
            del self._armed[stage]
        else:
            self._armed[stage] = (fault, remaining - 1)
        return fault

    def active(self) -> list[dict[str, Any]]:
        """Armed faults with the uses left (`remaining`, null = unlimited)."""
        return [
            {**fault.model_dump(), "remaining": remaining}
            for fault, remaining in self._armed.values()
        ]
