"""Bazaar discovery on the devnet facilitator: a catalogue of the resources its settled
payments declared, listed at GET /discovery/resources.

A resource server declares its endpoint in the 402's `extensions.bazaar` (x402 v1: in
`accepts[].outputSchema`) and the client echoes it in its PaymentPayload. When a payment
settles here, the SDK's `extract_discovery_info` validates the declaration against its
own schema and extracts it; the resource is then upserted under its URL (query and
fragment dropped; an MCP tool under URL and tool name). The latest declaration wins;
the payment it came with replaces the accepted payment of the same scheme and network
and keeps those of other schemes and networks. A payment that does not settle, carries
no declaration or one that fails validation is not catalogued.

What the payer sends is untrusted: the SDK drops invalid service metadata and route
templates, and entries are bounded in size and number (least recently updated go first).
Validation checks the declared schema against its meta-schema each time (milliseconds,
on the settle's answer path); a declaration byte-for-byte like one that passed before is
not validated again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from multidict import MultiMapping
from x402.extensions.bazaar import BAZAAR, DiscoveredResource, DiscoveryResource, extract_discovery_info
from x402.extensions.bazaar.v1.facilitator import build_bazaar_extension_from_discovery_info
from x402.facilitator_base import SettleResultContext
from x402.schemas import PaymentPayload, PaymentPayloadV1, PaymentRequirements, PaymentRequirementsV1

logger = logging.getLogger(__name__)

# The x402 spec's paging bounds for GET /discovery/resources.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_RESOURCES = 1000
# One listed resource as JSON; a real declaration (a dataset's filters and row shape)
# is a few kilobytes.
MAX_ENTRY_BYTES = 64 * 1024

_NUMBER = re.compile(r"[0-9]{1,18}")
_QUERY_NAMES = ("limit", "offset", "type", "scheme", "network", "payTo")


class InvalidQuery(ValueError):
    """A /discovery/resources query this catalogue does not answer (a 400)."""


@dataclass(frozen=True)
class ListQuery:
    """One page of the catalogue, optionally filtered by the resource's type and by the
    scheme, network and payTo of an accepted payment (the SDK client's list params)."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    type: str | None = None
    scheme: str | None = None
    network: str | None = None
    pay_to: str | None = None

    @classmethod
    def parse(cls, query: MultiMapping[str]) -> ListQuery:
        given: dict[str, str] = {}
        for name in _QUERY_NAMES:
            values = query.getall(name, [])
            if len(values) > 1:
                raise InvalidQuery(f"{name} is given more than once")
            if values:
                given[name] = values[0]
        limit = _number(given, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}")
        return cls(
            limit=limit,
            offset=_number(given, "offset", 0),
            type=given.get("type"),
            scheme=given.get("scheme"),
            network=given.get("network"),
            pay_to=given.get("payTo"),
        )

    def matches(self, item: DiscoveryResource) -> bool:
        if self.type is not None and item.type != self.type:
            return False
        return any(self._accepts(accepted) for accepted in item.accepts or [])

    def _accepts(self, accepted: dict[str, Any]) -> bool:
        return (
            self.scheme in (None, accepted.get("scheme"))
            and self.network in (None, accepted.get("network"))
            and (self.pay_to is None or str(accepted.get("payTo", "")).lower() == self.pay_to.lower())
        )


def _number(given: dict[str, str], name: str, default: int) -> int:
    if name not in given:
        return default
    if not _NUMBER.fullmatch(given[name]):
        raise InvalidQuery(f"{name} must be a non-negative whole number")
    return int(given[name])


class Catalogue:
    """The resources settled payments declared, in memory."""

    def __init__(self, max_resources: int = MAX_RESOURCES) -> None:
        # Least recently updated first, so the oldest entry is the one evicted.
        self._resources: OrderedDict[tuple[str, str], DiscoveryResource] = OrderedDict()
        self._max_resources = max_resources
        # Digests of v2 declarations that passed validation, least recently seen first.
        self._valid_declarations: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._resources)

    def on_settled(self, context: SettleResultContext) -> None:
        """The facilitator's after-settle hook. Never raises: the money has moved, and an
        exception here would turn the settle's success into an error answer."""
        try:
            self.record(context.payment_payload, context.requirements)
        except Exception:
            logger.exception("discovery: a settled payment's declaration could not be catalogued")

    def record(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> DiscoveryResource | None:
        """Catalogue the resource `payload` declares; the entry, or None if it declares none."""
        digest = _declaration_digest(payload)
        seen = digest is not None and digest in self._valid_declarations
        found = extract_discovery_info(payload, requirements, validate=not seen)
        if found is None:
            return None
        if digest is not None:
            self._remember_valid(digest)
        url = urlsplit(found.resource_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            logger.warning("discovery: not catalogued, the resource is not an http(s) URL")
            return None
        accepted = requirements.model_dump(mode="json", by_alias=True, exclude_none=True)
        key = (found.resource_url, found.tool_name or "")
        previous = self._resources.get(key)
        accepts = [accepted]
        if previous is not None and previous.x402_version == found.x402_version:
            accepts += [other for other in previous.accepts or [] if _kind(other) != _kind(accepted)]
        entry = DiscoveryResource(
            resource=found.resource_url,
            type=found.discovery_info.input.type,
            x402_version=found.x402_version,
            accepts=sorted(accepts, key=_kind),
            last_updated=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            description=found.description,
            mime_type=found.mime_type,
            service_name=found.service_name,
            tags=found.tags,
            icon_url=found.icon_url,
            extensions={BAZAAR.key: _declaration(found)},
        )
        size = len(json.dumps(entry.to_dict()))
        if size > MAX_ENTRY_BYTES:
            logger.warning("discovery: not catalogued, %d bytes is over %d", size, MAX_ENTRY_BYTES)
            return None
        self._resources.pop(key, None)
        self._resources[key] = entry
        while len(self._resources) > self._max_resources:
            self._resources.popitem(last=False)
        logger.info("discovery: catalogued %s %s", found.method or found.tool_name, found.resource_url)
        return entry

    def _remember_valid(self, digest: bytes) -> None:
        self._valid_declarations.pop(digest, None)
        self._valid_declarations[digest] = None
        while len(self._valid_declarations) > self._max_resources:
            self._valid_declarations.popitem(last=False)

    def page(self, query: ListQuery) -> dict[str, Any]:
        """The list response of the x402 Discovery API, in resource URL order."""
        matching = [item for _, item in sorted(self._resources.items()) if query.matches(item)]
        page = matching[query.offset : query.offset + query.limit]
        return {
            "x402Version": 2,
            "items": [item.to_dict() for item in page],
            "pagination": {"limit": query.limit, "offset": query.offset, "total": len(matching)},
        }


def _declaration_digest(payload: PaymentPayload | PaymentPayloadV1) -> bytes | None:
    """SHA-256 of a v2 payload's declaration as the SDK validates it; None without one."""
    extensions = payload.extensions if isinstance(payload, PaymentPayload) else None
    declared = extensions.get(BAZAAR.key) if isinstance(extensions, dict) else None
    if declared is None:
        return None
    return hashlib.sha256(json.dumps(declared, sort_keys=True, separators=(",", ":")).encode()).digest()


def _kind(accepted: dict[str, Any]) -> tuple[str, str]:
    return str(accepted.get("scheme", "")), str(accepted.get("network", ""))


def _declaration(found: DiscoveredResource) -> dict[str, Any]:
    """The validated declaration as listed: info, schema and routeTemplate, nothing else
    of what the payer sent (its other extensions, e.g. a payment identifier, stay private)."""
    declared = (found.extensions or {}).get(BAZAAR.key)
    if found.x402_version == 2 and isinstance(declared, dict):
        declaration = {"info": declared["info"], "schema": declared["schema"]}
    else:
        # x402 v1 declared in outputSchema, without a schema; the SDK gives it a permissive one.
        synthesized = build_bazaar_extension_from_discovery_info(found.discovery_info)
        info = found.discovery_info.model_dump(mode="json", by_alias=True, exclude_none=True)
        declaration = {"info": info, "schema": synthesized["schema"]}
    if found.route_template:
        declaration["routeTemplate"] = found.route_template
    return declaration
