"""The gateway application factory."""

from __future__ import annotations

from aiohttp import web

from .bazaar import declarations
from .config import Settings
from .datasets import DatasetError, load_datasets
from .errors import error_middleware
from .keys import DATASETS, DEFAULT_DATASET, DISCOVERY, EVENTS, OPENAPI, SETTINGS
from .openapi import build_openapi
from .payments import paywall_middleware, sidecar_context
from .ratelimit import TokenBuckets, rate_limit_middleware
from .records import records_query_middleware
from .request_context import echo_request_id, request_context_middleware
from .routes import routes
from .telemetry import gateway_events
from .tracing import echo_trace_id, trace_context_middleware

# GET-only API: a request body is never read, so any large one is refused.
MAX_BODY_BYTES = 64 * 1024


def _buckets(rate_per_s: float, burst: int) -> TokenBuckets | None:
    return TokenBuckets(rate_per_s, burst) if rate_per_s > 0 else None


def create_app(settings: Settings) -> web.Application:
    """The app; loads every dataset now (DatasetError if one cannot be served)."""
    datasets = load_datasets(settings.data_dir)
    default = settings.default_dataset or next(iter(datasets))
    if default not in datasets:
        raise DatasetError(f"default dataset {default!r} is not in {settings.data_dir}: {', '.join(datasets)}")

    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        # Outermost first. The paywall must stay last: it sends paid answers itself.
        # (Server spans come from the stock aiohttp instrumentation, which inserts
        # its own middleware in front when the process sets tracing up.)
        middlewares=[
            trace_context_middleware,
            request_context_middleware,
            error_middleware,
            rate_limit_middleware(
                _buckets(settings.paid_rate_per_s, settings.paid_burst),
                _buckets(settings.free_rate_per_s, settings.free_burst),
            ),
            records_query_middleware,
            paywall_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[DATASETS] = datasets
    app[DEFAULT_DATASET] = default
    app[EVENTS] = gateway_events(settings.telemetry_capacity, env=settings.env)
    app[OPENAPI] = build_openapi(datasets)
    app[DISCOVERY] = declarations(datasets)
    app.cleanup_ctx.append(sidecar_context)
    app.on_response_prepare.append(echo_request_id)
    app.on_response_prepare.append(echo_trace_id)
    app.add_routes(routes)
    return app
