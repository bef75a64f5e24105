"""Settings sources shared by the sidecar's and the gateway's settings: the
environment first, then an optional TOML file named by an environment variable."""

from __future__ import annotations

import os

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource


def env_then_toml(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    file_variable: str,
) -> tuple[PydanticBaseSettingsSource, ...]:
    sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
    toml_path = os.environ.get(file_variable)
    if toml_path:
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
    return tuple(sources)
