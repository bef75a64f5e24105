"""Money rule 7: production pays on mainnets only, to an address that is not a
public development key's, and never through the public test facilitator. One
guard, used by the config check at start and for every route a caller sends."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from ..constants import DEVELOPMENT_ADDRESSES, MAINNET_NETWORKS, TEST_FACILITATOR_HOSTS, V1_TO_CAIP2


def production_refusal(*, pay_to: str, network: str, facilitators: Iterable[str]) -> str | None:
    """Why production must refuse these route terms, or None when it may use them."""
    if V1_TO_CAIP2.get(network, network) not in MAINNET_NETWORKS:
        allowed = ", ".join(sorted(MAINNET_NETWORKS))
        return f"production refuses testnet or unknown network {network[:80]!r} (mainnets: {allowed})"
    if any(_test_facilitator(facilitator_host(url)) for url in facilitators):
        return "production refuses the public test facilitator"
    if pay_to.lower() in DEVELOPMENT_ADDRESSES:
        return f"production refuses payTo {pay_to[:42]}: a development address whose key is public"
    return None


def _test_facilitator(host: str) -> bool:
    return any(host == test or host.endswith("." + test) for test in TEST_FACILITATOR_HOSTS)


def facilitator_host(url: str) -> str:
    """The host a facilitator URL reaches, as a resolver sees it: case, a trailing
    dot, `www.`, percent-escapes and Unicode dots do not make it another host;
    scheme, port, user, path and query do not matter to which host it is."""
    try:
        host = unquote(urlsplit(url.strip()).hostname or "")
    except ValueError:
        return ""  # not a URL at all: refused as a facilitator elsewhere
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # e.g. an empty label ("x402.org.."): compare it as written
    return host.lower().rstrip(".").removeprefix("www.")
