"""The route being paid for: the terms a caller sends win over the route it names
in the config, which win over the config's defaults; in production they must
pass money rule 7. Resolved once per request into a frozen PricedRoute (price in
atomic units of the asset, the asset's EIP-712 domain, payTo, network)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.default_assets import get_default_asset
from x402.mechanisms.evm.utils import get_asset_info

from ..constants import V1_TO_CAIP2, Reason
from .discovery import check_service_metadata, parse_declaration
from .errors import RouteError
from .production import production_refusal

_PRICE_PARSER = ExactEvmServerScheme()

EXACT = "exact"
# The schemes a route may offer, and what it offers when nobody says.
SCHEMES = (EXACT, SCHEME_BATCH_SETTLEMENT)
DEFAULT_SCHEMES = (EXACT,)


@dataclass(frozen=True)
class RouteTerms:
    """What a caller or the config says about a route (strings as given)."""

    key: str
    price: str = ""
    amount: str = ""
    pay_to: str = ""
    network: str = ""
    asset: str = ""
    description: str = ""
    mime_type: str = ""
    facilitators: tuple[str, ...] = ()
    max_timeout_seconds: int = 0
    # The x402 extensions the route declares: payment-identifier (required or
    # optional) and Bazaar discovery (the JSON of its declaration, tags, name).
    payment_identifier_required: bool = False
    discovery: str = ""
    tags: tuple[str, ...] = ()
    service_name: str = ""
    schemes: tuple[str, ...] = ()  # empty: not said


@dataclass(frozen=True)
class RouteDefaults:
    """What the sidecar's config says about the routes callers send."""

    price: str
    pay_to: str
    network: str
    # Routes the config knows by name; a caller may name one instead of spelling it out.
    named: Mapping[str, RouteTerms] = field(default_factory=dict)
    production: bool = False
    schemes: tuple[str, ...] = DEFAULT_SCHEMES


@dataclass(frozen=True)
class PricedRoute:
    key: str
    amount: int
    asset: str
    asset_name: str
    asset_version: str
    pay_to: str
    network: str
    description: str
    mime_type: str
    facilitators: tuple[str, ...]
    max_timeout_seconds: int
    payment_identifier_required: bool = False
    # The route's `extensions.bazaar`, checked (discovery.py); None: not declared.
    discovery: dict[str, Any] | None = field(default=None, compare=False)
    tags: tuple[str, ...] = ()
    service_name: str = ""
    # What the 402 offers, in this order (the order of `accepts`).
    schemes: tuple[str, ...] = DEFAULT_SCHEMES

    def offers(self, scheme: str) -> bool:
        return scheme in self.schemes

    @property
    def extra(self) -> dict[str, str]:
        return {"name": self.asset_name, "version": self.asset_version}


# Facilitators a caller may name for one route: each gets a client and health kept
# by the pool, so they are bounded and must be plain http(s) URLs.
MAX_ROUTE_FACILITATORS = 8
MAX_FACILITATOR_URL_LENGTH = 2048


def _check_facilitators(urls: tuple[str, ...]) -> None:
    if len(urls) > MAX_ROUTE_FACILITATORS:
        raise RouteError(Reason.INVALID_ROUTE, f"a route names at most {MAX_ROUTE_FACILITATORS} facilitators")
    for url in urls:
        if not _http_url(url):
            raise RouteError(Reason.INVALID_ROUTE, f"route facilitators must be http(s) URLs: {url[:100]!r}")


def _http_url(url: str) -> bool:
    if len(url) > MAX_FACILITATOR_URL_LENGTH:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def resolve_route(asked: RouteTerms, name: str, defaults: RouteDefaults) -> PricedRoute:
    """The route a caller asks for: its terms as given (`asked`), completed from the
    configured route `name` and the defaults, checked and priced."""
    return _cached_price_route(choose_terms(asked, name, defaults))


def choose_terms(asked: RouteTerms, name: str, defaults: RouteDefaults) -> RouteTerms:
    """Each term as the caller gives it, else the named route's, else the default;
    refused in production when money rule 7 forbids the result."""
    named = RouteTerms(key="")
    if name:
        found = defaults.named.get(name)
        if found is None:
            raise RouteError(Reason.UNKNOWN_ROUTE, f"no route named {name!r} in the sidecar config")
        named = found
    terms = RouteTerms(
        key=asked.key or named.key,
        price=asked.price or named.price or defaults.price,
        amount=asked.amount,
        pay_to=asked.pay_to or named.pay_to or defaults.pay_to,
        network=asked.network or named.network or defaults.network,
        asset=asked.asset or named.asset,
        description=asked.description or named.description,
        mime_type=asked.mime_type or named.mime_type,
        facilitators=asked.facilitators or named.facilitators,
        max_timeout_seconds=asked.max_timeout_seconds or named.max_timeout_seconds,
        # A caller may require an id of a route its config leaves optional, not the reverse.
        payment_identifier_required=asked.payment_identifier_required or named.payment_identifier_required,
        discovery=asked.discovery or named.discovery,
        tags=asked.tags or named.tags,
        service_name=asked.service_name or named.service_name,
        schemes=asked.schemes or named.schemes or defaults.schemes,
    )
    if defaults.production:
        # The guard of the config check at start, for what a caller names per request.
        problem = production_refusal(pay_to=terms.pay_to, network=terms.network, facilitators=terms.facilitators)
        if problem:
            raise RouteError(Reason.INVALID_ROUTE, problem)
    return terms


def _check_schemes(schemes: tuple[str, ...]) -> tuple[str, ...]:
    schemes = schemes or DEFAULT_SCHEMES
    unknown = [scheme for scheme in schemes if scheme not in SCHEMES]
    if unknown or len(set(schemes)) != len(schemes):
        raise RouteError(Reason.INVALID_ROUTE, f"route schemes must be distinct, from {', '.join(SCHEMES)}")
    return schemes


def price_route(terms: RouteTerms) -> PricedRoute:
    """Turn route terms into atomic amounts with the SDK's price parser, and
    check what the route declares."""
    _check_facilitators(terms.facilitators)
    check_service_metadata(terms.tags, terms.service_name)
    discovery = parse_declaration(terms.discovery)
    schemes = _check_schemes(terms.schemes)
    if terms.payment_identifier_required and EXACT not in schemes:
        # Only exact payments carry payment identifiers (idempotency.py).
        raise RouteError(Reason.INVALID_ROUTE, "a route requiring payment identifiers must offer exact")
    if not terms.key:
        raise RouteError(Reason.INVALID_ROUTE, "route key is required")
    if not terms.pay_to:
        raise RouteError(Reason.INVALID_ROUTE, "route pay_to is required")
    network = V1_TO_CAIP2.get(terms.network, terms.network)
    if not network.startswith("eip155:"):
        raise RouteError(Reason.INVALID_ROUTE, f"unsupported network {terms.network!r}")
    try:
        if terms.amount:
            amount = int(terms.amount)
            # No asset named: the network's USDC, as for a price in USD.
            asset = terms.asset or get_default_asset(network)["asset"]
            info = get_asset_info(network, asset)
        else:
            parsed = _PRICE_PARSER.parse_price(terms.price, network)
            amount = int(parsed.amount)
            asset = terms.asset or parsed.asset
            info = get_asset_info(network, asset)
    except (ValueError, TypeError, KeyError) as exc:
        raise RouteError(Reason.INVALID_ROUTE, f"cannot price route {terms.key!r}: {exc}") from exc
    if amount <= 0:
        raise RouteError(Reason.INVALID_ROUTE, f"route {terms.key!r} must have a positive price")
    return PricedRoute(
        key=terms.key,
        amount=amount,
        asset=info["address"],
        asset_name=info["name"],
        asset_version=info["version"],
        pay_to=terms.pay_to,
        network=network,
        description=terms.description,
        mime_type=terms.mime_type or "application/json",
        facilitators=terms.facilitators,
        max_timeout_seconds=terms.max_timeout_seconds or 60,
        payment_identifier_required=terms.payment_identifier_required,
        discovery=discovery,
        tags=terms.tags,
        service_name=terms.service_name,
        schemes=schemes,
    )


# Pricing goes through the SDK's parser and a declaration through its validators;
# routes repeat, so remember the answer.
_cached_price_route = functools.lru_cache(maxsize=1024)(price_route)
