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
    assert settings.default_price == "$0.001"
    assert settings.network == "eip155:84532"
    assert settings.pay_to == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_environment_with_per_dataset_prices_as_json(monkeypatch):
    monkeypatch.setenv("GATEWAY_PORT", "9000")
    monkeypatch.setenv("GATEWAY_SIDECAR_TARGET", "grpc://10.0.0.5:50051")
    monkeypatch.setenv("GATEWAY_DATASETS", '{"stations": {"price": "2500", "description": "Stations"}}')
    settings = Settings()
    assert settings.port == 9000
    assert settings.sidecar_target == "10.0.0.5:50051"
    assert settings.price_of("stations") == "2500"
    assert settings.price_of("observations") == "$0.001"
    assert settings.description_of("stations") == "Stations"


def test_toml_file_named_by_gateway_config(monkeypatch, tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('default_price = "$0.002"\n[datasets.observations]\nprice = "$0.01"\n', encoding="utf-8")
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    settings = Settings()
    assert settings.price_of("observations") == "$0.01"
    assert settings.price_of("stations") == "$0.002"


@pytest.mark.parametrize("price", ["0.001", "$", "1e3", "$-1", "ten"])
def test_bad_price_is_refused_at_start(price):
    with pytest.raises(ValidationError, match="price must look like"):
        Settings(default_price=price)
    with pytest.raises(ValidationError, match="price must look like"):
        Settings(datasets={"stations": {"price": price}})


def test_a_dataset_priced_per_row_offers_a_full_page_unless_it_names_its_maximum(monkeypatch):
    monkeypatch.setenv(
        "GATEWAY_DATASETS",
        '{"observations": {"price_per_row": "10"}, "stations": {"price_per_row": 7, "price": "50"}}',
    )
    settings = Settings()
    assert (settings.price_per_row_of("observations"), settings.price_of("observations")) == (10, "10000")
    assert (settings.price_per_row_of("stations"), settings.price_of("stations")) == (7, "50")
    assert (settings.price_per_row_of("other"), settings.price_of("other")) == (None, "$0.001")


@pytest.mark.parametrize("per_row", ["$0.00001", "0", "-1", "1.5", "ten"])
def test_a_bad_price_per_row_is_refused_at_start(per_row):
    with pytest.raises(ValidationError, match="price_per_row"):
        Settings(datasets={"stations": {"price_per_row": per_row}})


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "GATEWAY_PAY_TO and GATEWAY_NETWORK"),
        ({"network": "eip155:8453"}, "GATEWAY_PAY_TO set"),
        ({"pay_to": "0x" + "12" * 20}, "GATEWAY_NETWORK set"),
        ({"pay_to": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8", "network": "eip155:8453"}, "GATEWAY_PAY_TO set"),
    ],
)
def test_production_refuses_to_start_on_the_devnet_pay_to_or_network(given, missing):
    with pytest.raises(ValidationError, match=f"production needs {missing}"):
        Settings(env="production", **given)


def test_production_starts_with_its_own_pay_to_and_network(monkeypatch):
    monkeypatch.setenv("GATEWAY_ENV", "production")
    monkeypatch.setenv("GATEWAY_PAY_TO", "0x" + "12" * 20)
    monkeypatch.setenv("GATEWAY_NETWORK", "eip155:8453")
    assert Settings().env == "production"


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
