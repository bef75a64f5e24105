"""Async client for the sidecar's gRPC API (`paysidecar.v1`) over one grpc.aio channel.

The channel reaches one sidecar or a pool of them (`channel_target`): gRPC's own
client-side `round_robin` spreads the calls over every address the target
resolves to, and health checking (`grpc.health.v1` Watch) takes a replica out of
the rotation while it is not SERVING (shutting down) or unreachable. Any replica
can finish a payment another one authorized: Settle carries the client's payment
header and the claim token, which is what the replica needs to adopt the claim.

Every call carries a deadline, `x-request-id` and, when a token is set,
`authorization: Bearer <token>`. Retries come from the channel's service config
and stay on the safe side of the money rules: a call is re-sent at most once,
unchanged, within its deadline, and only on UNAVAILABLE (it never got an answer;
the retry goes to another replica when there is one). That covers Authorize (the
same message, so the same `call_key`: the retry continues the call's tracking
record) and Settle (the re-sent Settle carries the same payment_id and claim
token, and the ledger settles a payment at most once: a Settle that finds its
claim already being settled is refused, never settled again). Nothing is retried
on DEADLINE_EXCEEDED or any other status, where the first attempt may still be
running.

Create the client inside a running event loop; close it with `close()` or
`async with`.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from paysidecar.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)
from paysidecar_common.request_ids import REQUEST_ID_METADATA
from paysidecar_common.trace_attributes import onto_client_span

_SORT_FIELDS = {
    "timestamp": tracking_pb2.SORT_FIELD_TIMESTAMP,
    "response_time": tracking_pb2.SORT_FIELD_RESPONSE_TIME,
}

_Response = TypeVar("_Response", bound=Message)

# Re-sent once, unchanged, only when the call never got an answer (see above).
_RETRY_POLICY = {
    "maxAttempts": 2,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
_SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    # "": the sidecar's overall health, NOT_SERVING from the start of its shutdown.
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{"name": [{}], "retryPolicy": _RETRY_POLICY}],
}

_CHANNEL_OPTIONS = (
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    # This config, never one a DNS TXT record names: the money rules depend on it.
    ("grpc.service_config_disable_resolution", 1),
    ("grpc.enable_retries", 1),
    # While a sidecar is down, calls fail fast (UNAVAILABLE → 503) or go to another
    # replica; once it is back, the channel must notice within seconds, not after
    # gRPC's default 120 s backoff.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

_ADDRESS_FAMILIES = ((ipaddress.IPv4Address, "ipv4"), (ipaddress.IPv6Address, "ipv6"))


def channel_target(target: str) -> str:
    """The gRPC target for one sidecar or a pool of them.

    One address goes as it is: `host:port` (a name is resolved by DNS, and every
    address it has is balanced over), `dns:///name:port`, or any gRPC target.
    Several go comma-separated: IP addresses (`127.0.0.1:50051,127.0.0.1:50052`,
    or `[::1]:50051,[::1]:50052`) become gRPC's `ipv4:`/`ipv6:` target, and that
    form itself (`ipv4:127.0.0.1:50051,127.0.0.1:50052`) is taken as it is; for
    names, use one DNS name that resolves to all of them. Each address may keep the
    `grpc://` prefix `make run` prints. ValueError for anything else."""
    addresses = [part.strip().removeprefix("grpc://") for part in target.split(",")]
    if not all(addresses):
        raise ValueError(f"sidecar target {target!r} has an empty address")
    if len(addresses) == 1 or addresses[0].startswith(("ipv4:", "ipv6:")):
        return ",".join(addresses)
    hosts = [_ip_address(address) for address in addresses]
    for family, scheme in _ADDRESS_FAMILIES:
        if all(isinstance(host, family) for host in hosts):
            return f"{scheme}:{','.join(addresses)}"
    raise ValueError(
        f"sidecar target {target!r}: several sidecars are IP:port addresses of one family, "
        "or one dns:///name:port that resolves to all of them"
    )


def _ip_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of an `ip:port` or `[ipv6]:port` address; None for a name or no port."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return None
    return ip if bracketed == isinstance(ip, ipaddress.IPv6Address) else None


def _timestamp(moment: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp; naive datetimes are taken as UTC."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class SidecarClient:
    """One channel to the sidecar (or a pool of them, see `channel_target`),
    shared by every request of a process."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_root_cert: bytes | None = None,
        timeout_s: float = 10.0,
        settle_timeout_s: float = 60.0,
    ) -> None:
        # Settle gets its own, longer deadline: the sidecar may retry an ambiguous
        # settle and then ask the chain before it answers (DESIGN §4 rule 4), and a
        # deadline cut short would turn a paid answer into a refused one.
        self._timeout_s = timeout_s
        self._settle_timeout_s = settle_timeout_s
        self._token = token
        target = channel_target(target)
        # Client spans, and the trace carried to the sidecar as `traceparent`; their
        # request.id and x402 facts come from the caller's request scope (trace_attributes.py).
        interceptors: Sequence[Any] = aio_client_interceptors(request_hook=onto_client_span)
        if tls_root_cert is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_root_cert)
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=_CHANNEL_OPTIONS, interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS, interceptors=interceptors)
        self._payments = payment_pb2_grpc.PaymentServiceStub(self._channel)
        self._tracking = tracking_pb2_grpc.TrackingServiceStub(self._channel)
        self._status = status_pb2_grpc.StatusServiceStub(self._channel)
        self._channels = channels_pb2_grpc.ChannelServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> SidecarClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    # -- payments ---------------------------------------------------------

    async def authorize(self, request: payment_pb2.AuthorizeRequest) -> payment_pb2.AuthorizeResponse:
        """Authorize one call. Unless the request carries a `call_key`, it gets a
        fresh one (the request passed in is left as it is), which a retry re-sends
        (on any replica): the sidecar then continues the call's tracking record
        instead of opening a second one for the same request id."""
        if not request.call_key:
            keyed = payment_pb2.AuthorizeRequest()
            keyed.CopyFrom(request)
            keyed.call_key = uuid.uuid4().hex
            request = keyed
        return await self._call(
            self._payments.Authorize, request, request_id=request.request_id, timeout_s=self._timeout_s
        )

    async def settle(
        self,
        *,
        payment_id: str,
        claim_token: str,
        tracking_id: str,
        response_status: int,
        response_time_ms: int,
        request_id: str,
        payment_signature: str = "",
        x_payment: str = "",
        charge: int | None = None,
    ) -> payment_pb2.SettleResponse:
        """`claim_token` is Verified.claim_token: only the claim's holder may settle it.
        `payment_signature` / `x_payment` are the payment header the request came
        with, as sent to Authorize: with them any replica of a pool can settle the
        claim, not only the one that verified it (without, another replica answers
        NOT_FOUND). `charge` (atomic units, at most Verified.amount): what a
        batch-settlement request costs when less than the route's price; None: the
        price."""
        request = payment_pb2.SettleRequest(
            payment_id=payment_id,
            claim_token=claim_token,
            tracking_id=tracking_id,
            response_status=response_status,
            response_time_ms=response_time_ms,
            request_id=request_id,
            payment_signature=payment_signature,
            x_payment=x_payment,
        )
        if charge is not None:
            request.charge = str(charge)
        return await self._call(
            self._payments.Settle, request, request_id=request_id, timeout_s=self._settle_timeout_s
        )

    async def release(
        self,
        *,
        payment_id: str,
        claim_token: str,
        tracking_id: str,
        reason: str,
        request_id: str,
        response_status: int = 0,
        response_time_ms: int = 0,
    ) -> payment_pb2.ReleaseResponse:
        """Gives back a claim that was not settled (FAILED_PRECONDITION otherwise), or
        with RELEASE_NOT_DELIVERED reports that a settled answer never reached the client."""
        request = payment_pb2.ReleaseRequest(
            payment_id=payment_id,
            claim_token=claim_token,
            tracking_id=tracking_id,
            reason=reason,
            response_status=response_status,
            response_time_ms=response_time_ms,
            request_id=request_id,
        )
        return await self._call(
            self._payments.Release, request, request_id=request_id, timeout_s=self._timeout_s
        )

    async def describe_route(
        self, route: payment_pb2.Route, *, request_id: str | None = None, timeout_s: float | None = None
    ) -> payment_pb2.RouteDescription:
        """The terms the sidecar pays `route` with (price, amount, asset, network,
        payTo, schemes), as Authorize would offer them; no payment, no record."""
        request = payment_pb2.DescribeRouteRequest(route=route)
        return await self._call(
            self._payments.DescribeRoute, request, request_id=request_id, timeout_s=timeout_s or self._timeout_s
        )

    # -- tracking ---------------------------------------------------------

    async def list_records(
        self,
        *,
        path: str = "",
        network: str = "",
        scheme: str = "",
        payer: str = "",
        verified: bool | None = None,
        settled: bool | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        sort_by: Literal["timestamp", "response_time"] = "timestamp",
        ascending: bool = False,
        limit: int = 0,
        cursor: str = "",
        request_id: str | None = None,
    ) -> tracking_pb2.ListRecordsResponse:
        """Records newest (or slowest) first; limit 0 means the sidecar's default (50)."""
        request = tracking_pb2.ListRecordsRequest(
            path=path,
            network=network,
            scheme=scheme,
            payer=payer,
            verified=verified,
            settled=settled,
            start=_timestamp(start),
            end=_timestamp(end),
            sort_by=_SORT_FIELDS[sort_by],
            ascending=ascending,
            limit=limit,
            cursor=cursor,
        )
        return await self._read(self._tracking.ListRecords, request, request_id)

    async def get_record(self, record_id: str, *, request_id: str | None = None) -> tracking_pb2.Record:
        return await self._read(self._tracking.GetRecord, tracking_pb2.GetRecordRequest(id=record_id), request_id)

    async def get_stats(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        request_id: str | None = None,
    ) -> tracking_pb2.Stats:
        request = tracking_pb2.GetStatsRequest(start=_timestamp(start), end=_timestamp(end))
        return await self._read(self._tracking.GetStats, request, request_id)

    async def prune(
        self, *, older_than: datetime | None = None, request_id: str | None = None
    ) -> tracking_pb2.PruneResponse:
        """Deletes records older than `older_than` (unset: the sidecar's retention)."""
        request = tracking_pb2.PruneRequest(older_than=_timestamp(older_than))
        return await self._read(self._tracking.Prune, request, request_id)

    # -- channels ---------------------------------------------------------

    async def list_channels(
        self, *, payer: str = "", limit: int = 0, cursor: str = "", request_id: str | None = None
    ) -> channels_pb2.ListChannelsResponse:
        """batch-settlement channels by id; limit 0 means the sidecar's default (50)."""
        request = channels_pb2.ListChannelsRequest(payer=payer, limit=limit, cursor=cursor)
        return await self._read(self._channels.ListChannels, request, request_id)

    async def collect(self, *, wait_s: int = 10, request_id: str | None = None) -> channels_pb2.CollectResponse:
        """Run the sidecar's collector now (claims, settles, channels left out);
        waits up to `wait_s` (0..60) for another replica's run to end."""
        request = channels_pb2.CollectRequest(wait_seconds=wait_s)
        # The run may wait for the lock and then send transactions: its own deadline.
        return await self._call(self._channels.Collect, request, request_id=request_id, timeout_s=self._timeout_s + wait_s)

    # -- status -----------------------------------------------------------

    async def get_status(self, *, request_id: str | None = None) -> status_pb2.GetStatusResponse:
        return await self._read(self._status.GetStatus, status_pb2.GetStatusRequest(), request_id)

    async def get_telemetry(
        self, limit: int = 100, *, request_id: str | None = None
    ) -> status_pb2.GetTelemetryResponse:
        return await self._read(self._status.GetTelemetry, status_pb2.GetTelemetryRequest(limit=limit), request_id)

    async def health(self, *, timeout_s: float | None = None) -> str:
        """The sidecar's grpc.health.v1 status name, e.g. "SERVING"."""
        answer = await self._call(
            self._health.Check,
            health_pb2.HealthCheckRequest(),
            request_id=None,
            timeout_s=timeout_s or self._timeout_s,
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)

    # -- plumbing ---------------------------------------------------------

    async def _read(
        self, rpc: Callable[..., Awaitable[_Response]], request: Message, request_id: str | None
    ) -> _Response:
        return await self._call(rpc, request, request_id=request_id, timeout_s=self._timeout_s)

    def _metadata(self, request_id: str) -> tuple[tuple[str, str], ...]:
        metadata = ((REQUEST_ID_METADATA, request_id),)
        if self._token:
            metadata += (("authorization", f"Bearer {self._token}"),)
        return metadata

    async def _call(
        self,
        rpc: Callable[..., Awaitable[_Response]],
        request: Message,
        *,
        request_id: str | None,
        timeout_s: float,
    ) -> _Response:
        """One call; its deadline covers the retry the service config allows."""
        metadata = self._metadata(request_id or str(uuid.uuid4()))
        return await rpc(request, timeout=timeout_s, metadata=metadata)
