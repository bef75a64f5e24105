"""Protobuf <-> domain conversion for the payment API, in one place."""

from __future__ import annotations

import re
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from paysidecar.v1 import channels_pb2, payment_pb2

from ..constants import RELEASE_UNSPECIFIED, Reason
from ..payments.answers import HttpAnswer
from ..payments.channels.state import Channel
from ..payments.collection.records import AtRisk, Collection, CollectReport
from ..payments.codec import is_url, pick_header
from ..payments.errors import InvalidRequest
from ..payments.flow import (
    AuthorizeInput,
    Challenge,
    Completed,
    Rejection,
    ReleaseInput,
    SettleInput,
    SettleResult,
    Verified,
)
from ..payments.routes import PricedRoute, RouteDefaults, RouteTerms, resolve_route
from ..status import CollectionStatus


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
        schemes=tuple(route.schemes),
        price_per_row=route.price_per_row,
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


def route_description(
    request: payment_pb2.DescribeRouteRequest, routes: RouteDefaults
) -> payment_pb2.RouteDescription:
    """The route Authorize would offer for the same Route, resolved the same way."""
    route = resolve_route(route_terms(request.route), request.route.name, routes)
    return payment_pb2.RouteDescription(
        key=route.key,
        name=request.route.name,
        price=route.price,
        amount=str(route.amount),
        asset=route.asset,
        asset_name=route.asset_name,
        asset_version=route.asset_version,
        network=route.network,
        pay_to=route.pay_to,
        schemes=list(route.schemes),
        max_timeout_seconds=route.max_timeout_seconds,
        price_per_row=_atomic_or_empty(route.price_per_row),
    )


def _atomic_or_empty(units: int) -> str:
    return str(units) if units else ""


def authorize_response(
    tracking_id: str, outcome: Challenge | Rejection | Verified | Completed, route: PricedRoute
) -> payment_pb2.AuthorizeResponse:
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
                channel_id=outcome.channel_id,
                price_per_row=_atomic_or_empty(route.price_per_row),
            )
        )
    elif isinstance(outcome, Completed):
        a = outcome.answer
        response.completed.CopyFrom(payment_pb2.Completed(status=a.status, headers=a.headers, body=a.body))
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


_ATOMIC = re.compile(r"[0-9]{1,78}")


def _charge(request: payment_pb2.SettleRequest) -> int | None:
    if not request.HasField("charge"):
        return None
    if not _ATOMIC.fullmatch(request.charge):
        raise InvalidRequest(Reason.INVALID_CHARGE, "charge must be a whole number of atomic units")
    return int(request.charge)


def settle_input(request: payment_pb2.SettleRequest) -> SettleInput:
    return SettleInput(
        payment_id=request.payment_id,
        claim_token=request.claim_token,
        response_status=request.response_status,
        response_time_ms=int(request.response_time_ms),
        header=pick_header(request.payment_signature, request.x_payment),
        request_id=request.request_id,
        charge=_charge(request),
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


# -- channels ----------------------------------------------------------------

MAX_CHANNELS_PAGE = 100
DEFAULT_CHANNELS_PAGE = 50
_CHANNEL_CURSOR = re.compile(r"0x[0-9a-f]{64}")


def channels_page(request: channels_pb2.ListChannelsRequest) -> tuple[str, int, str]:
    """(after, limit, payer) of a ListChannels request; the cursor is the last
    channel id of the previous page."""
    limit = request.limit or DEFAULT_CHANNELS_PAGE
    if not 1 <= limit <= MAX_CHANNELS_PAGE:
        raise InvalidRequest(Reason.INVALID_ARGUMENT, f"limit must be from 1 to {MAX_CHANNELS_PAGE}")
    if request.cursor and not _CHANNEL_CURSOR.fullmatch(request.cursor):
        raise InvalidRequest(Reason.INVALID_ARGUMENT, "cursor is not one this sidecar made")
    if "\x00" in request.payer:
        raise InvalidRequest(Reason.INVALID_ARGUMENT, "payer may not contain NUL characters")
    return request.cursor, limit, request.payer


def _stamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def channel_message(channel: Channel) -> channels_pb2.Channel:
    config, mirror = channel.config, channel.mirror
    return channels_pb2.Channel(
        channel_id=channel.channel_id,
        network=channel.network,
        payer=config.payer,
        payer_authorizer=config.payer_authorizer,
        receiver=config.receiver,
        receiver_authorizer=config.receiver_authorizer,
        token=config.token,
        withdraw_delay_seconds=config.withdraw_delay,
        charged=str(channel.charged),
        signed=str(channel.signed_max_claimable),
        balance=str(mirror.balance),
        claimed=str(mirror.total_claimed),
        refund_nonce=str(mirror.refund_nonce),
        withdraw_requested_at=mirror.withdraw_requested_at,
        synced_at=_stamp(channel.synced_at),
        last_request_at=_stamp(channel.last_request_at),
        busy=channel.reservation is not None,
    )


def collect_wait_s(request: channels_pb2.CollectRequest) -> float:
    if not 0 <= request.wait_seconds <= 60:
        raise InvalidRequest(Reason.INVALID_ARGUMENT, "wait_seconds must be from 0 to 60")
    return float(request.wait_seconds)


def collection_message(collection: Collection) -> channels_pb2.Collection:
    return channels_pb2.Collection(
        id=str(collection.id),
        kind=collection.kind,
        network=collection.network,
        receiver=collection.receiver,
        token=collection.token,
        channel_ids=[row.channel_id for row in collection.rows],
        amount=str(collection.amount),
        state=collection.state,
        transaction=collection.transaction,
        facilitator=collection.facilitator,
        reason=collection.reason,
        decided_by=collection.decided_by,
    )


def collect_response(report: CollectReport) -> channels_pb2.CollectResponse:
    return channels_pb2.CollectResponse(
        ran=report.ran,
        message=report.message,
        claims=[collection_message(claim) for claim in report.claims],
        settles=[collection_message(settle) for settle in report.settles],
        left_out=[
            channels_pb2.LeftOutChannel(
                channel_id=left.channel_id, payer=left.payer, unclaimed=str(left.unclaimed), reason=left.reason
            )
            for left in report.left_out
        ],
        resolved=[collection_message(collection) for collection in report.resolved],
        claimed_channels=report.claimed_channels,
        claimed_amount=str(report.claimed_amount),
        settled_amount=str(report.settled_amount),
    )


def collector_status(status: CollectionStatus) -> channels_pb2.CollectorStatus:
    state = status.state
    at_risk = status.at_risk if status.at_risk is not None else AtRisk()
    last = state.last
    return channels_pb2.CollectorStatus(
        money_at_risk=str(at_risk.total) if status.at_risk is not None else "",
        channels_at_risk=at_risk.channels,
        withdrawals_pending=at_risk.withdrawing,
        top_at_risk=[
            channels_pb2.ChannelAtRisk(
                channel_id=channel.channel_id,
                payer=channel.payer,
                unclaimed=str(channel.unclaimed),
                withdraw_requested_at=channel.withdraw_requested_at,
            )
            for channel in at_risk.top
        ],
        last_claim_at=_stamp(at_risk.last_claim_at),
        failures_24h=at_risk.failures_24h,
        open_intents=at_risk.open_intents,
        enabled=status.enabled,
        last_run_at=_stamp(state.last_run_at),
        last_trigger=last.trigger if last else "",
        last_claimed_channels=last.claimed_channels if last else 0,
        last_claimed_amount=str(last.claimed_amount) if last else "0",
        last_settled_amount=str(last.settled_amount) if last else "0",
        last_left_out=len(last.left_out) if last else 0,
        runs=state.runs,
        failures=state.failures,
        last_failure=state.last_failure,
        watch_rounds=status.watch_rounds,
        watched_channels=status.watched_channels,
        watch_round_seconds=status.watch_round_s,
    )
