"""Gateway settings from the environment and a TOML file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.constants import SAMPLE_DATA_DIR


def test_defaults():
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8402)
    assert settings.sidecar_target == "127.0.0.1:50051"
    assert settings.data_dir == SAMPLE_DATA_DIR
    # No terms of its own: every dataset is paid with the sidecar's default route.
    assert (settings.route_of("stations"), settings.terms_of("stations")) == ("", {})
    assert (settings.default_price, settings.pay_to, settings.network) == (None, None, None)


def test_environment_with_per_dataset_routes_as_json(monkeypatch):
    monkeypatch.setenv("GATEWAY_PORT", "9000")
    monkeypatch.setenv("GATEWAY_SIDECAR_TARGET", "grpc://10.0.0.5:50051")
    monkeypatch.setenv("GATEWAY_ROUTE", "datasets")
    monkeypatch.setenv("GATEWAY_DATASETS", '{"stations": {"route": "stations", "description": "Stations"}}')
    settings = Settings()
    assert settings.port == 9000
    assert settings.sidecar_target == "10.0.0.5:50051"
    assert (settings.route_of("stations"), settings.route_of("observations")) == ("stations", "datasets")
    assert settings.description_of("stations") == "Stations"


def test_toml_file_named_by_gateway_config(monkeypatch, tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('route = "datasets"\n[datasets.observations]\nroute = "dear"\n', encoding="utf-8")
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    settings = Settings()
    assert (settings.route_of("observations"), settings.route_of("stations")) == ("dear", "datasets")


def test_development_overrides_become_the_terms_it_sends():
    settings = Settings(
        env="development",
        default_price="$0.002",
        pay_to="0x" + "12" * 20,
        network="eip155:84532",
        datasets={"stations": {"price": "2500"}},
    )
    # "$..." is USD; bare digits are atomic units, sent as the amount (not as $2500).
    assert settings.terms_of("stations") == {"amount": "2500", "pay_to": "0x" + "12" * 20, "network": "eip155:84532"}
    assert settings.terms_of("observations")["price"] == "$0.002"


@pytest.mark.parametrize("price", ["0.001", "$", "1e3", "$-1", "ten"])
def test_bad_price_is_refused_at_start(price):
    with pytest.raises(ValidationError, match="price must look like"):
        Settings(default_price=price)
    with pytest.raises(ValidationError, match="price must look like"):
        Settings(datasets={"stations": {"price": price}})


def test_a_development_dataset_may_override_the_price_per_row(monkeypatch):
    monkeypatch.setenv("GATEWAY_DATASETS", '{"stations": {"price_per_row": "7", "price": "50"}}')
    settings = Settings()
    assert settings.terms_of("stations") == {"amount": "50", "price_per_row": "7"}
    assert settings.terms_of("observations") == {}


@pytest.mark.parametrize("per_row", ["$0.00001", "0", "-1", "1.5", "ten"])
def test_a_bad_price_per_row_is_refused_at_start(per_row):
    with pytest.raises(ValidationError, match="price_per_row"):
        Settings(datasets={"stations": {"price_per_row": per_row}})


@pytest.mark.parametrize("env", ["production", "test"])
@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"pay_to": "0x" + "12" * 20}, "GATEWAY_PAY_TO"),
        ({"network": "eip155:8453"}, "GATEWAY_NETWORK"),
        ({"default_price": "$0.01"}, "GATEWAY_DEFAULT_PRICE"),
        ({"datasets": {"stations": {"price": "$0.01"}}}, "GATEWAY_DATASETS stations.price"),
        ({"datasets": {"stations": {"price_per_row": 7}}}, "GATEWAY_DATASETS stations.price_per_row"),
    ],
)
def test_outside_development_a_gateway_money_term_refuses_to_start(env, given, named):
    with pytest.raises(ValidationError, match=f"{named}: with GATEWAY_ENV={env} the money terms come from the sidecar"):
        Settings(env=env, **given)


def test_production_starts_with_no_terms_of_its_own(monkeypatch):
    monkeypatch.setenv("GATEWAY_ENV", "production")
    monkeypatch.setenv("GATEWAY_ROUTE", "datasets")
    settings = Settings()
    assert (settings.env, settings.route_of("stations"), settings.terms_of("stations")) == ("production", "datasets", {})


@pytest.mark.parametrize(
    ("target", "channel_target"),
    [
        ("127.0.0.1:50051,127.0.0.1:50052", "ipv4:127.0.0.1:50051,127.0.0.1:50052"),
        ("grpc://10.0.0.5:50051, grpc://10.0.0.6:50051", "ipv4:10.0.0.5:50051,10.0.0.6:50051"),
        ("ipv4:10.0.0.5:50051,10.0.0.6:50051", "ipv4:10.0.0.5:50051,10.0.0.6:50051"),
        ("[::1]:50051,[::1]:50052", "ipv6:[::1]:50051,[::1]:50052"),
        ("dns:///sidecars.internal:50051", "dns:///sidecars.internal:50051"),
        ("sidecars.internal:50051", "sidecars.internal:50051"),
    ],
)
def test_several_sidecars_or_a_dns_name_of_a_pool(monkeypatch, target, channel_target):
    monkeypatch.setenv("GATEWAY_SIDECAR_TARGET", target)
    assert Settings().sidecar_target == channel_target


@pytest.mark.parametrize(
    "target",
    [
        "a.internal:50051,b.internal:50051",  # names: one DNS name for the pool instead
        "127.0.0.1:50051,[::1]:50051",
        "127.0.0.1:50051,,127.0.0.1:50052",
        "127.0.0.1,127.0.0.2",
        "127.0.0.1:50051,127.0.0.1:99999",
        "::1:50051,::1:50052",
        "",
    ],
)
def test_a_sidecar_target_grpc_cannot_balance_over_is_refused_at_start(monkeypatch, target):
    monkeypatch.setenv("GATEWAY_SIDECAR_TARGET", target)
    with pytest.raises(ValidationError, match="sidecar_target"):
        Settings()
