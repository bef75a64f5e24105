"""Protobuf <-> domain conversion for the payment API, in one place."""

from __future__ import annotations

from paysidecar.v1 import payment_pb2

from ..constants import RELEASE_UNSPECIFIED, Reason
from ..payments.answers import HttpAnswer
from ..payments.codec import is_url, pick_header
from ..payments.errors import InvalidRequest
from ..payments.flow import AuthorizeInput, Challenge, Rejection, ReleaseInput, SettleInput, SettleResult, Verified
from ..payments.routes import RouteDefaults, RouteTerms, resolve_route


def route_terms(route: payment_pb2.Route) -> RouteTerms:
    """The terms the caller spelled out (its route's name aside)."""
    return RouteTerms(
        key=route.key,
        price=route.price,
        amount=route.amount,
        pay_to=route.pay_to,
        network=route.network,
        asset=route.asset,
        description=route.description,
        mime_type=route.mime_type,
        facilitators=tuple(route.facilitators),
        max_timeout_seconds=route.max_timeout_seconds,
        payment_identifier_required=route.payment_identifier_required,
        discovery=route.discovery,
        tags=tuple(route.tags),
        service_name=route.service_name,
    )


def _refuse_nul(request: payment_pb2.AuthorizeRequest) -> None:
    """The URL and the route go into the payment ledger, whose text cannot hold
    U+0000; no HTTP request carries one there (URLs escape it)."""
    route = request.route
    texts = (request.url, request.method, *(value for _, value in route.ListFields() if isinstance(value, str)))
    if any("\x00" in text for text in (*texts, *route.facilitators, *route.tags)):
        raise InvalidRequest(Reason.INVALID_ARGUMENT, "url, method and route may not contain NUL characters")


# A call key is only hashed into the record id; longer ones are a caller's bug.
MAX_CALL_KEY = 128


def authorize_input(
    request: payment_pb2.AuthorizeRequest, routes: RouteDefaults, trace_id: str
) -> AuthorizeInput:
    _refuse_nul(request)
    if not is_url(request.url):
        raise InvalidRequest(Reason.INVALID_ARGUMENT, "url is not a URL")
    if len(request.call_key) > MAX_CALL_KEY:
        raise InvalidRequest(Reason.INVALID_ARGUMENT, f"call_key is at most {MAX_CALL_KEY} characters")
    return AuthorizeInput(
        request_id=request.request_id,
        method=request.method,
        url=request.url,
        route=resolve_route(route_terms(request.route), request.route.name, routes),
        payment_signature=request.payment_signature,
        x_payment=request.x_payment,
        client_ip=request.client_ip,
        user_agent=request.user_agent,
        headers=dict(request.headers),
        query=request.query,
        trace_id=trace_id,
        call_key=request.call_key,
    )


def authorize_response(tracking_id: str, outcome: Challenge | Rejection | Verified) -> payment_pb2.AuthorizeResponse:
    response = payment_pb2.AuthorizeResponse(tracking_id=tracking_id)
    if isinstance(outcome, Verified):
        response.verified.CopyFrom(
            payment_pb2.Verified(
                payment_id=outcome.payment_id,
                payer=outcome.payer,
                scheme=outcome.scheme,
                network=outcome.network,
                amount=outcome.amount,
                x402_version=outcome.version,
                redeem=outcome.redeem,
                claim_token=outcome.claim_token,
            )
        )
    elif isinstance(outcome, Rejection):
        a = outcome.answer
        response.rejected.CopyFrom(
            payment_pb2.Rejected(
                status=a.status, reason=outcome.reason, message=outcome.message, headers=a.headers, body=a.body
            )
        )
    else:
        a = outcome.answer
        response.payment_required.CopyFrom(payment_pb2.PaymentRequired(status=a.status, headers=a.headers, body=a.body))
    return response


def settle_input(request: payment_pb2.SettleRequest) -> SettleInput:
    return SettleInput(
        payment_id=request.payment_id,
        claim_token=request.claim_token,
        response_status=request.response_status,
        response_time_ms=int(request.response_time_ms),
        header=pick_header(request.payment_signature, request.x_payment),
    )


def release_input(request: payment_pb2.ReleaseRequest) -> ReleaseInput:
    return ReleaseInput(
        payment_id=request.payment_id,
        claim_token=request.claim_token,
        reason=request.reason or RELEASE_UNSPECIFIED,
        response_status=request.response_status,
        response_time_ms=int(request.response_time_ms),
    )


def http_answer(answer: HttpAnswer) -> payment_pb2.HttpAnswer:
    return payment_pb2.HttpAnswer(status=answer.status, headers=answer.headers, body=answer.body)


def settle_response(result: SettleResult) -> payment_pb2.SettleResponse:
    response = payment_pb2.SettleResponse(
        success=result.success,
        headers=result.headers,
        transaction=result.transaction,
        payer=result.payer,
        network=result.network,
        reason=result.reason,
    )
    if result.answer is not None:
        response.answer.CopyFrom(http_answer(result.answer))
    return response
