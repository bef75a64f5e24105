"""Tracking fields for each lifecycle step, built from domain values. Hashes
only: raw payloads and signatures never reach a record (money rule 6)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from ..constants import RELEASE_STALE_CLAIM, SECRET_HEADERS
from . import ledger
from .codec import DecodedPayment
from .ledger import LedgerEntry
from .lifecycle import Step
from .ports import Attempt, Tracker
from .routes import PricedRoute
from .settlement import FROM_CHAIN, SettleOutcome


# Names the ids of records that a caller's call key derives (uuid5).
_CALL_KEY_NAMESPACE = uuid.UUID("5d0c2f8e-3b9a-4f55-9c1e-7a2d40b1c6e3")


def tracking_id(call_key: str, *call: str) -> uuid.UUID:
    """The id of a call's tracking record. With the caller's key of the call,
    the same for every retry of it (same key, same request: `call`), so a retry
    continues the record; another call sharing only the key, or only the request
    id (which HTTP clients may choose), gets an id of its own, and without the
    key nobody can name an existing record. No key: a fresh random id."""
    if not call_key:
        return uuid.uuid4()
    return uuid.uuid5(_CALL_KEY_NAMESPACE, json.dumps([call_key, *call]))


def start_fields(request_id: str, method: str, url: str, route_key: str, trace_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "method": method[:10],
        "path": urlsplit(url).path,
        "route_key": route_key,
        "url": url,
        "payment_required": True,
        "request": {"method": method},
        "metadata": {"request_id": request_id, "trace_id": trace_id},
    }


def request_fields(
    method: str, headers: dict[str, str], query: str, client_ip: str, user_agent: str, route: PricedRoute | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request": {
            "method": method,
            "headers": {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS},
            "query": query,
            "client_ip": client_ip,
            "user_agent": user_agent,
        }
    }
    if route is not None:
        fields["route_config"] = {
            "key": route.key,
            "amount": str(route.amount),
            "asset": route.asset,
            "network": route.network,
            "pay_to": route.pay_to,
            "description": route.description,
            "mime_type": route.mime_type,
            "facilitators": list(route.facilitators),
        }
    return fields


def payment_fields(payment: DecodedPayment, route: PricedRoute) -> dict[str, Any]:
    signed = payment.authorization
    return {
        "payment": {
            "scheme": payment.scheme,
            "network": route.network,
            "asset": route.asset,
            "amount": str(signed.value),
            "payer": signed.payer,
            "pay_to": signed.to,
        },
        "x402_version": payment.version,
        "payment_nonce": signed.nonce,
        "payment_valid_before": str(signed.valid_before),
    }


def verification_fields(
    *,
    verified: bool,
    error: str | None,
    attempts: tuple[Attempt, ...] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"payment_verified": verified, "verification_error": None if verified else error}
    metadata = {"verify_attempts": [a.as_record() for a in attempts]} if attempts else {}
    if extra:
        fields.update(extra)
        metadata.update(extra.get("metadata", {}))
    if metadata:
        fields["metadata"] = metadata
    return fields


def identifier_fields(identifier: str, replay_of: str = "") -> dict[str, Any]:
    """The payment-identifier id a call's payment carried: every call paid with
    one id shows it; a replay also names the payment it was served from."""
    named = {"id": identifier, **({"replay_of": replay_of} if replay_of else {})}
    return {"metadata": {"payment_identifier": named}}


def settlement_fields(
    entry: LedgerEntry, outcome: SettleOutcome, response_status: int, response_time_ms: int
) -> dict[str, Any]:
    return {
        "settlement": _settlement(
            entry,
            success=outcome.status == ledger.SETTLED,
            status=outcome.status,
            transaction=outcome.transaction,
            source=outcome.source,
            error_reason=outcome.reason or None,
            facilitator_reason=outcome.facilitator_reason or None,
        ),
        "handler_executed": True,
        "response_status": response_status,
        "response_time_ms": response_time_ms,
        "metadata": {"settle_attempts": [a.as_record() for a in outcome.attempts]},
    }


def redeem_fields(entry: LedgerEntry, response_status: int, response_time_ms: int) -> dict[str, Any]:
    fields = _served_unsettled(entry, response_status, response_time_ms, redeemed=True)
    return {**fields, "metadata": {"redeem": {"payment_id": entry.payment_id}}}


def replay_fields(entry: LedgerEntry, response_status: int, response_time_ms: int) -> dict[str, Any]:
    """Served again from the payment `entry` (its id's first), without a settle."""
    return _served_unsettled(entry, response_status, response_time_ms, replay_of=entry.payment_id)


def _served_unsettled(entry: LedgerEntry, response_status: int, response_time_ms: int, **how: Any) -> dict[str, Any]:
    """Served on the strength of `entry`'s settled payment; no settle was sent."""
    return {
        "settlement": _settlement(
            entry, success=True, status=ledger.SETTLED, transaction=entry.transaction, source=entry.reconciled_by, **how
        ),
        "handler_executed": True,
        "response_status": response_status,
        "response_time_ms": response_time_ms,
    }


def record_release(
    tracker: Tracker, record_id: uuid.UUID, reason: str, state: str, response_status: int, elapsed_ms: int
) -> None:
    """A released claim's record: why, where the payment stands, and the call's end."""
    tracker.record(record_id, Step.RELEASE, release_fields(reason, state, response_status, elapsed_ms))
    tracker.record(record_id, Step.FINALIZE, finalize_fields(response_status, elapsed_ms))


def release_fields(reason: str, state: str, response_status: int, response_time_ms: int) -> dict[str, Any]:
    return {
        "settlement": _released(reason, state),
        "handler_executed": True,
        "response_status": response_status,
        "response_time_ms": response_time_ms,
    }


def recovered_fields(
    entry: LedgerEntry, state: str, transaction: str, error_reason: str, at: float
) -> dict[str, Any]:
    """The recovery job moved a settle in doubt to `state` as the chain says."""
    return {
        "settlement": _settlement(
            entry,
            success=state == ledger.SETTLED_UNSERVED,
            status=state,
            transaction=transaction,
            source=FROM_CHAIN,
            error_reason=error_reason or None,
        ),
        "metadata": _recovered(state, at),
    }


def stale_release_fields(at: float) -> dict[str, Any]:
    """The recovery job released a claim whose request never finished."""
    return {
        "settlement": _released(RELEASE_STALE_CLAIM, ledger.RELEASED),
        "metadata": _recovered(ledger.RELEASED, at),
    }


def finalize_fields(response_status: int, response_time_ms: int) -> dict[str, Any]:
    return {"response_status": response_status, "response_time_ms": response_time_ms}


def _settlement(
    entry: LedgerEntry, *, success: bool, status: str, transaction: str, source: str, **more: Any
) -> dict[str, Any]:
    return {
        "success": success,
        "status": status,
        "transaction": transaction or None,
        "network": entry.network,
        "payer": entry.payer,
        "facilitator": entry.facilitator,
        "reconciled": source == FROM_CHAIN,
        "source": source or None,
        **more,
    }


def _released(reason: str, state: str) -> dict[str, Any]:
    return {"success": False, "released": True, "reason": reason, "ledger_state": state}


def _recovered(state: str, at: float) -> dict[str, Any]:
    return {"recovered": {"state": state, "at": at}}
