"""The gateway's payments: one SidecarClient for the app's lifetime, the sidecar
route each records request is paid with, the terms the sidecar holds for it, and
the paywall (the client package's x402 middleware, used as any service would) in
the gateway's middleware chain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from aiohttp import web

from paysidecar.aiohttp_middleware import RouteSpec, x402_middleware
from paysidecar.client import SidecarClient

from .http_helpers import Handler
from .keys import DISCOVERY, EVENTS, PAYWALL, RECORDS_QUERY, SETTINGS, SIDECAR
from .render import CONTENT_TYPES

logger = logging.getLogger(__name__)

# A free listing waits this long at most for the sidecar to say what datasets cost.
TERMS_TIMEOUT_S = 2.0


def dataset_route(app: web.Application, dataset: str, mime_type: str = "application/json") -> RouteSpec:
    """What the gateway sends for `dataset`: the sidecar route's name (the money
    terms are the sidecar's), what describes the data and its x402 extensions; in
    development, the terms it overrides."""
    settings = app[SETTINGS]
    return RouteSpec(
        key=f"GET /v1/datasets/{dataset}/records",
        name=settings.route_of(dataset),
        description=settings.description_of(dataset),
        mime_type=mime_type,
        payment_identifier_required=settings.require_payment_identifier,
        discovery=app[DISCOVERY].get(dataset, ""),
        tags=settings.tags_of(dataset),
        service_name=settings.service_name,
        **settings.terms_of(dataset),
    )


def paid_route(request: web.Request) -> RouteSpec | None:
    """The route to pay for: set for records requests whose query validated."""
    query = request.get(RECORDS_QUERY)
    if query is None:
        return None
    return dataset_route(request.app, query.dataset.name, CONTENT_TYPES[query.plan.format])


async def dataset_terms(app: web.Application, datasets: Iterable[str], request_id: str) -> dict[str, dict[str, Any]]:
    """What each dataset costs, from the sidecar (the terms its 402 will offer).
    A dataset whose terms the sidecar cannot give (down, unknown route) shows
    them as null: the listing stays free and up."""
    names = list(datasets)
    answers = await asyncio.gather(*(_route_terms(app, name, request_id) for name in names))
    return dict(zip(names, answers, strict=True))


async def _route_terms(app: web.Application, dataset: str, request_id: str) -> dict[str, Any]:
    route = dataset_route(app, dataset).to_proto()
    try:
        terms = await app[SIDECAR].describe_route(route, request_id=request_id, timeout_s=TERMS_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        logger.warning("no terms for dataset %s from the sidecar: %s %s", dataset, exc.code().name, exc.details())
        return dict.fromkeys(("price", "amount", "pricing", "price_per_row", "asset", "network", "pay_to", "schemes"))
    return {
        "price": terms.price or None,
        # The most one request costs; priced per row, a request costs price_per_row ×
        # the rows it returns (at least one), at most this.
        "amount": terms.amount,
        "pricing": "per_row" if terms.price_per_row else "per_request",
        "price_per_row": terms.price_per_row or None,
        "asset": terms.asset,
        "network": terms.network,
        "pay_to": terms.pay_to,
        "schemes": list(terms.schemes),
    }


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
