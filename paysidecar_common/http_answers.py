"""HTTP answers built away from any web framework, and our one JSON error shape
(DESIGN §7): {"error": {"code", "message", "request_id"}}. The sidecar builds the
answers a paid route sends instead of its content; the client package and the
gateway send them as they are, and answer their own errors in the same shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def error_answer(
    status: int, code: str, message: str, request_id: str, *, headers: Mapping[str, str] | None = None
) -> HttpAnswer:
    """`code` is for machines (a reason code), `message` for people; `headers` are added."""
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return HttpAnswer(status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}, json.dumps(body).encode())


# The one answer for "a settle may have moved the money and nobody can tell yet":
# never "nothing was charged", never a new payment. The sidecar gives it while the
# chain does not tell; the client package when its Settle call itself failed.
PAYMENT_IN_DOUBT = "payment_in_doubt"
IN_DOUBT_MESSAGE = "the payment is being checked; retry with the same payment header"


def payment_in_doubt(
    request_id: str, retry_after_s: int, *, headers: Mapping[str, str] | None = None
) -> HttpAnswer:
    """503 with Retry-After: the same payment header, retried, is served once if the
    chain shows the payment."""
    retry = {"Retry-After": str(retry_after_s), **(headers or {})}
    return error_answer(503, PAYMENT_IN_DOUBT, IN_DOUBT_MESSAGE, request_id, headers=retry)
