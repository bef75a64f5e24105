"""Request ids (DESIGN §7): every answer carries `X-Request-ID`, the client's own
when it is well-formed, else a new UUID. The id goes on to the sidecar as
`x-request-id` gRPC metadata and is the `request.id` of every span."""

from __future__ import annotations

import re
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_METADATA = "x-request-id"

_WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,128}")


def choose_request_id(offered: str | None) -> str:
    """The client's X-Request-ID when it is well-formed, else a new UUID."""
    return offered if offered and _WELL_FORMED.fullmatch(offered) else str(uuid.uuid4())
