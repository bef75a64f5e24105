"""Gateway settings: environment (GATEWAY_*) and an optional TOML file named by
GATEWAY_CONFIG. Loaded once in main() and passed down."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from paysidecar.client import channel_target
from paysidecar_common.settings_sources import env_then_toml

from .constants import SAMPLE_DATA_DIR

# "$0.001" (USD, converted by the sidecar) or atomic units of the asset ("1000").
_PRICE = re.compile(r"\$\d+(\.\d+)?|\d+")
# A Bazaar tag or service name: 1-32 printable ASCII characters; at most 5 tags.
_BAZAAR_TEXT = re.compile(r"[\x20-\x7e]{1,32}")
MAX_TAGS = 5


def _check_bazaar_text(text: str) -> str:
    if not _BAZAAR_TEXT.fullmatch(text):
        raise ValueError(f"tags and service_name are 1-32 printable ASCII characters, got {text[:40]!r}")
    return text


def _check_tags(tags: list[str] | None) -> list[str] | None:
    if tags is not None:
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        for tag in tags:
            _check_bazaar_text(tag)
    return tags


def _check_price(price: str) -> str:
    if not _PRICE.fullmatch(price):
        raise ValueError(f'price must look like "$0.001" or atomic units like "1000", got {price!r}')
    return price


class DatasetConfig(BaseModel):
    """Per-dataset settings, keyed by dataset name (the CSV file's stem)."""

    # The sidecar route (PAYSIDECAR_ROUTES) the dataset is paid with; unset: GATEWAY_ROUTE.
    route: str | None = None
    # Development only: a price, and a price per row (atomic units of the asset),
    # that override the route's.
    price: str | None = None
    price_per_row: int | None = Field(None, gt=0)
    description: str | None = None
    # Bazaar tags of the dataset's records route (default: "dataset" and its name).
    tags: list[str] | None = None

    @field_validator("price")
    @classmethod
    def _price(cls, price: str | None) -> str | None:
        return None if price is None else _check_price(price)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        return _check_tags(tags)

    @field_validator("price_per_row", mode="before")
    @classmethod
    def _atomic(cls, value: object) -> object:
        # Atomic units only: what a request is charged is computed here, without
        # the asset's decimals that a "$" price needs.
        if isinstance(value, str) and not value.isdigit():
            raise ValueError(f'price_per_row must be atomic units of the asset like "10", got {value!r}')
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    # Reported with telemetry events. Outside "development" the money terms come
    # from the sidecar's route config alone: the overrides below refuse to start.
    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8402, ge=0, le=65535)

    sidecar_target: str = "127.0.0.1:50051"
    sidecar_token: str | None = None
    sidecar_tls_root_cert: Path | None = None
    sidecar_timeout_s: float = Field(10.0, gt=0)
    sidecar_settle_timeout_s: float = Field(60.0, gt=0)

    data_dir: Path = SAMPLE_DATA_DIR
    # Dataset served at /v1/records; unset = the first dataset by name.
    default_dataset: str | None = None
    datasets: dict[str, DatasetConfig] = Field(default_factory=dict)
    # The sidecar route every dataset is paid with unless its own config names one;
    # "" = the sidecar's default route. Price, payTo, network, asset and facilitators
    # live there, in one place.
    route: str = ""
    # Development only: overrides of the sidecar route's terms (to try a price out).
    default_price: str | None = None
    pay_to: str | None = None
    network: str | None = None
    # x402 extensions of the records routes: a payment-identifier id required of
    # every payment (else optional), and the Bazaar service name of the resources.
    require_payment_identifier: bool = False
    service_name: str = "paysidecar datasets"

    # Bearer token for /v1/telemetry; unset = telemetry is closed to everyone.
    admin_token: str | None = None

    # Per client IP token buckets; a rate of 0 turns the limit off.
    # Generous by default: paid requests already cost the caller money, and one
    # client IP may be a whole office behind NAT. Tighten per deployment.
    paid_rate_per_s: float = Field(100.0, ge=0)
    paid_burst: int = Field(200, ge=1)
    free_rate_per_s: float = Field(200.0, ge=0)
    free_burst: int = Field(400, ge=1)

    max_query_length: int = Field(4096, ge=64)
    telemetry_capacity: int = Field(1000, ge=1)
    shutdown_grace_s: float = Field(10.0, ge=0)

    @field_validator("default_price")
    @classmethod
    def _default_price(cls, price: str | None) -> str | None:
        return None if price is None else _check_price(price)

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, name: str) -> str:
        return _check_bazaar_text(name)

    @field_validator("sidecar_target")
    @classmethod
    def _target(cls, target: str) -> str:
        # One sidecar, several (balanced over), or a DNS name of a pool; each
        # address may keep the grpc:// prefix `make run` prints.
        return channel_target(target)

    @model_validator(mode="after")
    def _terms_only_from_the_sidecar(self) -> Settings:
        if self.env == "development":
            return self
        # A term set here would be sent with every request, over the sidecar's own.
        overrides = [
            f"GATEWAY_{name.upper()}" for name in ("default_price", "pay_to", "network") if getattr(self, name)
        ]
        overrides += [
            f"GATEWAY_DATASETS {name}.{term}"
            for name, dataset in self.datasets.items()
            for term in ("price", "price_per_row")
            if getattr(dataset, term)
        ]
        if overrides:
            raise ValueError(
                f"{', '.join(overrides)}: with GATEWAY_ENV={self.env} the money terms come from the sidecar's "
                "route config (PAYSIDECAR_ROUTES, GATEWAY_ROUTE names the route); only development overrides them"
            )
        return self

    def route_of(self, dataset: str) -> str:
        """The sidecar route `dataset` is paid with ("" = the sidecar's default)."""
        override = self.datasets.get(dataset)
        return override.route if override and override.route is not None else self.route

    def terms_of(self, dataset: str) -> dict[str, str]:
        """The terms this (development) gateway overrides for `dataset`: RouteSpec
        fields, empty outside development (refused at start there)."""
        override = self.datasets.get(dataset)
        price = override.price if override and override.price else self.default_price
        terms = {"pay_to": self.pay_to or "", "network": self.network or ""}
        if price:
            # "$0.001" is USD; bare digits are atomic units of the asset.
            terms["amount" if price.isdigit() else "price"] = price
        if override and override.price_per_row:
            terms["price_per_row"] = str(override.price_per_row)
        return {name: value for name, value in terms.items() if value}

    def description_of(self, dataset: str) -> str:
        override = self.datasets.get(dataset)
        if override and override.description:
            return override.description
        return f"Records of the {dataset} dataset"

    def tags_of(self, dataset: str) -> tuple[str, ...]:
        override = self.datasets.get(dataset)
        if override and override.tags is not None:
            return tuple(override.tags)
        # A dataset's name may be longer than a tag: then it is no tag.
        return ("dataset", dataset) if _BAZAAR_TEXT.fullmatch(dataset) else ("dataset",)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_then_toml(settings_cls, init_settings, env_settings, "GATEWAY_CONFIG")
