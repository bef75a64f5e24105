"""The gateway's payments: one SidecarClient for the app's lifetime, the price of
each records request, and the paywall (the client package's x402 middleware, used
as any service would) in the gateway's middleware chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from paysidecar.aiohttp_middleware import RouteSpec, x402_middleware
from paysidecar.client import SidecarClient

from .http_helpers import Handler
from .keys import DISCOVERY, EVENTS, PAYWALL, RECORDS_QUERY, SETTINGS, SIDECAR
from .render import CONTENT_TYPES


def paid_route(request: web.Request) -> RouteSpec | None:
    """The route to pay for: set for records requests whose query validated."""
    query = request.get(RECORDS_QUERY)
    if query is None:
        return None
    settings = request.app[SETTINGS]
    name = query.dataset.name
    price = settings.price_of(name)
    # The sidecar reads `price` as USD; a price in atomic units goes as `amount`.
    in_usd = price.startswith("$")
    return RouteSpec(
        key=f"GET /v1/datasets/{name}/records",
        price=price if in_usd else "",
        amount="" if in_usd else price,
        pay_to=settings.pay_to,
        network=settings.network,
        description=settings.description_of(name),
        mime_type=CONTENT_TYPES[query.plan.format],
        payment_identifier_required=settings.require_payment_identifier,
        discovery=request.app[DISCOVERY].get(name, ""),
        tags=settings.tags_of(name),
        service_name=settings.service_name,
    )


async def sidecar_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the sidecar client (a grpc.aio channel needs the running loop)."""
    settings = app[SETTINGS]
    root_cert = settings.sidecar_tls_root_cert.read_bytes() if settings.sidecar_tls_root_cert else None
    client = SidecarClient(
        settings.sidecar_target,
        token=settings.sidecar_token,
        tls_root_cert=root_cert,
        timeout_s=settings.sidecar_timeout_s,
        settle_timeout_s=settings.sidecar_settle_timeout_s,
    )
    app[SIDECAR] = client
    app[PAYWALL] = x402_middleware(client, paid_route, on_event=app[EVENTS].event)
    yield
    await client.close()


@web.middleware
async def paywall_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Hands over to the x402 middleware, which exists once the client does."""
    return await request.app[PAYWALL](request, handler)
