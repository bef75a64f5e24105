"""Code shared by the sidecar, the gateway and the client package (`paysidecar`):
settings sources, trace attributes and tracing set-up, request ids, the JSON error
answer and the telemetry event ring. It imports none of them."""
