"""Who may import whom (DESIGN §2): the client package (`paysidecar`) is the client
and depends on nothing of ours but `paysidecar_common`; the sidecar takes only the
gRPC contract (`paysidecar.v1`) from it; the gateway uses it as any user would;
`paysidecar_common` depends on none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("sidecar", "gateway", "devnet", "paysidecar", "paysidecar_common")
# What a user of the client package imports: the client, a middleware, the stubs.
CLIENT_API = ("paysidecar.client", "paysidecar.aiohttp_middleware", "paysidecar.asgi_middleware", "paysidecar.v1")
# The one import across these lines, and why it may stay.
EXCEPTIONS = {
    # Loaded only to pay a gateway on this machine without a key of one's own
    # (tests/gateway/test_cli.py proves no other path loads it).
    ("gateway/cli.py", "devnet.wallets"): "the devnet test wallets",
}


def imported_modules(package: str) -> dict[str, set[str]]:
    """{file: absolute names of our modules it imports}, relative imports resolved."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module_parts = path.relative_to(ROOT).with_suffix("").parts
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module_parts[: len(module_parts) - node.level]
                    names.add(".".join((*base, node.module) if node.module else base))
                elif node.module:
                    names.add(node.module)
        found[str(path.relative_to(ROOT))] = {name for name in names if name.split(".")[0] in OURS}
    return found


def offending(package: str, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    def ok(path: str, name: str) -> bool:
        if (path, name) in EXCEPTIONS:
            return True
        return any(name == prefix or name.startswith(prefix + ".") for prefix in allowed)

    found = {
        path: sorted(name for name in names if not ok(path, name)) for path, names in imported_modules(package).items()
    }
    return {path: names for path, names in found.items() if names}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("paysidecar", ("paysidecar", "paysidecar_common")),
        ("paysidecar_common", ("paysidecar_common",)),
        ("sidecar", ("sidecar", "paysidecar.v1", "paysidecar_common")),
        ("gateway", ("gateway", *CLIENT_API, "paysidecar_common")),
    ],
)
def test_package_imports_only_what_it_may(package, allowed):
    assert offending(package, allowed) == {}
