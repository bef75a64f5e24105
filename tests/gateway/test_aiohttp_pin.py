"""The gateway's server (gateway/http_server.py) answers unparsable requests in JSON
through aiohttp internals that no supported hook replaces. They were read and
tested on one aiohttp minor version; any other must be checked again first."""

from __future__ import annotations

import tomllib
from pathlib import Path

import aiohttp

from gateway.http_server import TESTED_AIOHTTP

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

RECHECK = (
    "gateway/http_server.py overrides aiohttp internals (AppRunner._make_server, Server._loop and "
    "_kwargs, RequestHandler.handle_error) that were checked against aiohttp {tested}, and aiohttp "
    "{installed} is installed. Read those in the new version's web_runner.py, web_server.py and "
    "web_protocol.py (or a supported hook that replaces them), run tests/gateway and "
    "tests/reliability/test_hostile_input.py, then update TESTED_AIOHTTP and the pin in pyproject.toml."
)


def test_installed_aiohttp_is_the_minor_version_the_gateway_server_was_checked_on():
    installed = ".".join(aiohttp.__version__.split(".")[:2])
    assert installed == TESTED_AIOHTTP, RECHECK.format(tested=TESTED_AIOHTTP, installed=aiohttp.__version__)


def test_pyproject_pins_aiohttp_to_that_minor_version():
    major, minor = TESTED_AIOHTTP.split(".")
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert f"aiohttp>={major}.{minor},<{major}.{int(minor) + 1}" in dependencies
