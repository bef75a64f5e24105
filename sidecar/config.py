"""Sidecar settings: environment (PAYSIDECAR_*, plus DATABASE_URL, FACILITATOR_URLS,
CHAIN_RPC_URLS) and an optional TOML file named by PAYSIDECAR_CONFIG.

Loaded once in main() and passed down; nothing deeper reads the environment.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from eth_account import Account
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from x402.mechanisms.evm.batch_settlement.constants import (
    DEFAULT_ONCHAIN_STATE_TTL_MS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from paysidecar_common.settings_sources import env_then_toml

from .constants import BASE_SEPOLIA, PUBLIC_TEST_FACILITATOR
from .payments.discovery import check_service_metadata, parse_declaration
from .payments.errors import RouteError
from .payments.production import production_refusal
from .payments.routes import DEFAULT_SCHEMES, SCHEMES, RouteDefaults, RouteTerms, resolve_route

# The devnet merchant wallet (see devnet/wallets.py); production must set its own.
DEVNET_PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


class RouteConfig(BaseModel):
    """A paid route the sidecar knows by name (PAYSIDECAR_ROUTES, or `[routes.NAME]`
    in the TOML file): the one place its money terms are set. Unset terms take the
    config's defaults (PAYSIDECAR_DEFAULT_PRICE, _PAY_TO, _NETWORK)."""

    # "$0.001" (USD, in the network's USDC), or `amount` in atomic units of `asset`.
    price: str | None = None
    amount: str | None = None
    # Priced by what an answer delivers: atomic units per row, charged by the caller
    # at Settle; `price` or `amount` is then the most one request costs (required).
    price_per_row: int | None = Field(None, gt=0)
    pay_to: str | None = None
    network: str | None = None
    asset: str | None = None
    description: str = ""
    mime_type: str = "application/json"
    facilitators: list[str] = Field(default_factory=list)
    max_timeout_seconds: int = 60
    # What its 402 offers, in this order; empty: PAYSIDECAR_SCHEMES.
    schemes: list[str] = Field(default_factory=list)
    # x402 extensions: payment-identifier required (else optional), and Bazaar
    # discovery (the route's declaration as a TOML table, its tags and service name).
    payment_identifier_required: bool = False
    discovery: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)
    service_name: str = ""

    @model_validator(mode="after")
    def _per_row_has_a_maximum(self) -> RouteConfig:
        if self.price_per_row and not (self.price or self.amount):
            raise ValueError("a route priced per row needs price or amount: the most one request costs")
        return self

    @model_validator(mode="after")
    def _extensions(self) -> RouteConfig:
        try:
            check_service_metadata(self.tags, self.service_name)
            parse_declaration(self._discovery_text())
        except RouteError as exc:
            raise ValueError(exc.message) from None
        return self

    def _discovery_text(self) -> str:
        return json.dumps(self.discovery) if self.discovery else ""

    def terms(self, name: str) -> RouteTerms:
        return RouteTerms(
            key=name,
            price=self.price or "",
            amount=self.amount or "",
            pay_to=self.pay_to or "",
            network=self.network or "",
            asset=self.asset or "",
            description=self.description,
            mime_type=self.mime_type,
            facilitators=tuple(self.facilitators),
            max_timeout_seconds=self.max_timeout_seconds,
            payment_identifier_required=self.payment_identifier_required,
            discovery=self._discovery_text(),
            tags=tuple(self.tags),
            service_name=self.service_name,
            schemes=tuple(self.schemes),
            price_per_row=str(self.price_per_row or ""),
        )


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_pairs(value: object) -> object:
    """"a=1,b=2" -> {"a": "1", "b": "2"}; keys may contain ':' (CAIP-2)."""
    if isinstance(value, str):
        pairs = {}
        for number, part in enumerate(_split_csv(value), start=1):
            key, sep, val = part.partition("=")
            if not sep or not key.strip() or not val.strip():
                # The value is not echoed: it may be an API key.
                raise ValueError(f"expected comma-separated key=value pairs; item {number} is not one")
            pairs[key.strip()] = val.strip()
        return pairs
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAYSIDECAR_",
        extra="ignore",
        populate_by_name=True,
    )

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    auth_token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None

    database_url: str | None = Field(
        None, validation_alias=AliasChoices("PAYSIDECAR_DATABASE_URL", "DATABASE_URL", "database_url")
    )
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(10, ge=1)

    facilitator_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [PUBLIC_TEST_FACILITATOR],
        validation_alias=AliasChoices("FACILITATOR_URLS", "PAYSIDECAR_FACILITATOR_URLS", "facilitator_urls"),
    )
    # Facilitator URL -> API key, sent as `Authorization: Bearer <key>`.
    facilitator_api_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    chain_rpc_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CHAIN_RPC_URLS", "PAYSIDECAR_CHAIN_RPC_URLS", "chain_rpc_urls"),
    )

    pay_to: str = DEVNET_PAY_TO
    network: str = BASE_SEPOLIA
    default_price: str = "$0.001"
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    # What a route's 402 offers when neither the caller nor its config says, in this order.
    schemes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_SCHEMES))

    # batch-settlement channels (DESIGN §12). The receiver authorizer signs our claims
    # and refunds: with a key here it is ours, without one the facilitator's (/supported).
    receiver_authorizer_key: SecretStr | None = None
    # The withdraw delay of the channels we open: after a payer starts a withdrawal,
    # what we charged must be claimed within it.
    withdraw_delay_s: int = Field(86400, ge=MIN_WITHDRAW_DELAY, le=MAX_WITHDRAW_DELAY)
    # The deposit the 402 suggests (extra.minDeposit), in requests at the route's price.
    min_deposit_requests: int = Field(10, ge=1)
    # How long a request waits for another one on its channel before it is answered
    # channel_busy, and how long a request holds its channel at most.
    channel_busy_wait_s: float = Field(2.0, ge=0)
    channel_hold_s: float = Field(60.0, gt=0)
    # A voucher is verified here, without a facilitator, while our copy of the
    # channel's contract state is younger than this.
    channel_mirror_ttl_s: float = Field(DEFAULT_ONCHAIN_STATE_TTL_MS / 1000, ge=0)
    # The withdrawal watch: the contract's fields of every channel in use (or with
    # charges unclaimed) are read from the chain this often, so a payer's withdrawal
    # is seen within it; at most this many channels a round.
    channel_watch_interval_s: float = Field(10.0, gt=0)
    channel_watch_limit: int = Field(10_000, ge=1)
    # While a withdrawal is pending, vouchers are taken until this long before it can
    # complete: the time the collector keeps for claiming them.
    channel_claim_margin_s: float = Field(300.0, ge=0)

    # The collector (claims and settles of channel charges). It runs every interval,
    # and at once when a channel's unclaimed charges reach the per-channel threshold,
    # all unclaimed charges the total threshold (atomic units; 0: no such trigger), or
    # a charge lands on a channel being withdrawn.
    collector_enabled: bool = True
    collect_interval_s: float = Field(600.0, gt=0)
    collect_channel_threshold: int = Field(50_000, ge=0)
    collect_total_threshold: int = Field(1_000_000, ge=0)
    collect_batch_size: int = Field(100, ge=1, le=1000)  # channels per claim transaction
    collect_max_channels: int = Field(5000, ge=1)  # channels per run
    # A channel left out of a claim (withdrawn, drained, bad voucher) is tried again after this.
    collect_retry_s: float = Field(300.0, ge=0)
    # A triggered run that finds another replica's run under way asks again after this.
    collect_busy_retry_s: float = Field(1.0, gt=0)

    connect_timeout_s: float = Field(2.0, gt=0)
    verify_timeout_s: float = Field(5.0, gt=0)
    settle_timeout_s: float = Field(15.0, gt=0)
    supported_timeout_s: float = Field(5.0, gt=0)
    settle_retries: int = Field(1, ge=0, le=5)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(30.0, gt=0)
    health_alpha: float = Field(0.2, gt=0, le=1)

    reconcile_window_s: float = Field(15.0, ge=0)
    reconcile_poll_s: float = Field(0.5, gt=0)
    chain_timeout_s: float = Field(3.0, gt=0)
    recovery_interval_s: float = Field(60.0, gt=0)
    # A claim verified but neither settled nor released for this long (its caller
    # vanished) is released by the recovery job; no settle was ever sent for it.
    claim_timeout_s: float = Field(600.0, gt=0)
    # x402 payment-identifier: how long a delivered payment is served again to a
    # payment with the same id (and the same request), without a new transfer.
    idempotency_window_s: float = Field(86400.0, gt=0)

    tracking_enabled: bool = True
    tracking_batch_size: int = Field(500, ge=1)
    tracking_flush_interval_s: float = Field(0.05, gt=0)
    # How long a record of a call still under way may wait to be written whole.
    tracking_hold_s: float = Field(0.25, ge=0)
    # How long a step waits for its row when another replica began the call.
    tracking_row_wait_s: float = Field(30.0, ge=0)
    spool_dir: str = ".paysidecar/spool"
    retention_days: int = Field(90, ge=1)
    # Prune refuses a cutoff younger than this (and one in the future).
    min_retention_days: int = Field(7, ge=1)
    prune_interval_s: float = Field(3600.0, gt=0)
    # The tracking table's partitions: one per UTC day (about 8.6 M rows at 100 paid
    # requests a second) or month, made this far ahead at start and every interval.
    tracking_partition_period: Literal["day", "month"] = "day"
    tracking_partition_ahead_days: int = Field(3, ge=1, le=366)
    tracking_partition_interval_s: float = Field(3600.0, gt=0)

    telemetry_capacity: int = Field(1000, ge=1)
    shutdown_grace_s: float = Field(10.0, ge=0)

    @field_validator("facilitator_urls", "schemes", mode="before")
    @classmethod
    def _urls(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("schemes")
    @classmethod
    def _schemes(cls, schemes: list[str]) -> list[str]:
        if not schemes or any(scheme not in SCHEMES for scheme in schemes) or len(set(schemes)) != len(schemes):
            raise ValueError(f"schemes must be distinct, from {', '.join(SCHEMES)}")
        return schemes

    @field_validator("receiver_authorizer_key")
    @classmethod
    def _authorizer_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            try:
                Account.from_key(key.get_secret_value())
            except (ValueError, TypeError):
                raise ValueError("receiver_authorizer_key is not a hex private key") from None  # not echoed
        return key

    @field_validator("facilitator_api_keys", "chain_rpc_urls", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        return _split_pairs(value)

    @field_validator("facilitator_urls")
    @classmethod
    def _urls_valid(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("at least one facilitator URL is required")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"facilitator URL must be http(s): {url!r}")
        return [url.rstrip("/") for url in urls]

    @model_validator(mode="after")
    def _retention_at_least_minimum(self) -> Settings:
        if self.retention_days < self.min_retention_days:
            raise ValueError(
                f"retention_days ({self.retention_days}) is below min_retention_days ({self.min_retention_days})"
            )
        return self

    @model_validator(mode="after")
    def _time_to_claim(self) -> Settings:
        # A withdrawal must be seen, and its channel claimed, before it can complete.
        if self.channel_watch_interval_s >= self.channel_claim_margin_s > 0:
            raise ValueError("channel_watch_interval_s must be below channel_claim_margin_s: a withdrawal's last"
                             " vouchers are claimed within one watch interval")
        if self.channel_claim_margin_s + self.channel_watch_interval_s >= self.withdraw_delay_s:
            raise ValueError(
                "channel_claim_margin_s + channel_watch_interval_s must be below withdraw_delay_s"
                f" ({self.channel_claim_margin_s:g} + {self.channel_watch_interval_s:g} >= {self.withdraw_delay_s})"
            )
        return self

    @model_validator(mode="after")
    def _production_guard(self) -> Settings:
        # Money rule 7, on every term the config sets (callers set none in production).
        if self.env != "production":
            return self
        problem = production_refusal(pay_to=self.pay_to, network=self.network, facilitators=self.facilitator_urls)
        if problem:
            raise ValueError(f"{problem} (check PAYSIDECAR_NETWORK, FACILITATOR_URLS and PAYSIDECAR_PAY_TO)")
        for name, route in self.routes.items():
            problem = production_refusal(
                pay_to=route.pay_to or self.pay_to,
                network=route.network or self.network,
                facilitators=route.facilitators,
            )
            if problem:
                raise ValueError(f"route {name!r}: {problem}")
        return self

    @model_validator(mode="after")
    def _routes_price(self) -> Settings:
        # A route that cannot be priced fails at start, not at its first request.
        defaults = self.route_defaults()
        for name in ("", *self.routes):
            try:
                resolve_route(RouteTerms(key=name or "default"), name, defaults)
            except RouteError as exc:
                where = f"route {name!r}" if name else "the default route (PAYSIDECAR_DEFAULT_PRICE, _NETWORK)"
                raise ValueError(f"{where}: {exc.message}") from None
        return self

    def route_defaults(self) -> RouteDefaults:
        """What this config says about the routes callers send (payments/routes.py)."""
        return RouteDefaults(
            price=self.default_price,
            pay_to=self.pay_to,
            network=self.network,
            named={name: route.terms(name) for name, route in self.routes.items()},
            production=self.env == "production",
            schemes=tuple(self.schemes),
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_then_toml(settings_cls, init_settings, env_settings, "PAYSIDECAR_CONFIG")
