"""The route being paid for. Its money terms (price, payTo, network, asset,
facilitators) live in the sidecar's config, in one place: a named route, else the
config's defaults. A caller may override them only outside production (a
development gateway trying a price); in production a caller names the route and
nothing more, and the config it resolves to passed money rule 7 at start.
Resolved once per request into a frozen PricedRoute (price in atomic units of the
asset, the asset's EIP-712 domain, payTo, network)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.mechanisms.evm.default_assets import get_default_asset
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.utils import get_asset_info

from ..constants import V1_TO_CAIP2, Reason
from .discovery import check_service_metadata, parse_declaration
from .errors import RouteError, RouteRefused

_PRICE_PARSER = ExactEvmServerScheme()
# A whole number of atomic units (a uint256 has at most 78 digits).
_ATOMIC = re.compile(r"[0-9]{1,78}")

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
    # Atomic units per row an answer delivers; empty: priced per request.
    price_per_row: str = ""


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
    # The price as configured ("$0.001"), for showing; "" when set in atomic units.
    price: str = ""
    # Atomic units per row, charged by the caller (at most `amount`); 0: per request.
    price_per_row: int = 0

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


# The terms that decide what a payment is worth and where it goes.
MONEY_TERMS = ("price", "amount", "price_per_row", "pay_to", "network", "asset", "facilitators")


def choose_terms(asked: RouteTerms, name: str, defaults: RouteDefaults) -> RouteTerms:
    """Each term as the caller gives it, else the named route's, else the default.
    In production a caller may set no money term: they come from the config alone."""
    if defaults.production:
        given = [term for term in MONEY_TERMS if getattr(asked, term)]
        if given:
            raise RouteRefused(
                Reason.ROUTE_TERMS_REFUSED,
                f"a production sidecar takes {', '.join(given)} from its route config only; "
                "send the route's name (PAYSIDECAR_ROUTES) and no money terms",
            )
    named = RouteTerms(key="")
    if name:
        found = defaults.named.get(name)
        if found is None:
            raise RouteRefused(Reason.UNKNOWN_ROUTE, f"no route named {name[:100]!r} in the sidecar config")
        named = found
    # A price and an amount are one term: whoever says either says what it costs.
    if asked.price or asked.amount:
        price, amount = asked.price, asked.amount
    elif named.price or named.amount:
        price, amount = named.price, named.amount
    else:
        price, amount = defaults.price, ""
    return RouteTerms(
        key=asked.key or named.key,
        price=price,
        amount=amount,
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
        price_per_row=asked.price_per_row or named.price_per_row,
    )


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
            asset = terms.asset or get_default_asset(network)["asset"]  # the network's USDC
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
    per_row = _price_per_row(terms, amount)
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
        price="" if terms.amount else terms.price,
        price_per_row=per_row,
    )


def _price_per_row(terms: RouteTerms, amount: int) -> int:
    """Atomic units per row, from 1 up to the route's price (the most one request costs)."""
    if not terms.price_per_row:
        return 0
    if not _ATOMIC.fullmatch(terms.price_per_row) or not 0 < int(terms.price_per_row) <= amount:
        raise RouteError(
            Reason.INVALID_ROUTE,
            f"route {terms.key!r}: price_per_row must be atomic units from 1 to the route's price ({amount})",
        )
    return int(terms.price_per_row)


# Pricing goes through the SDK's parser and a declaration through its validators;
# routes repeat, so remember the answer.
_cached_price_route = functools.lru_cache(maxsize=1024)(price_route)
