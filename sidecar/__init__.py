"""paysidecar: the gRPC payment sidecar."""

__version__ = "0.1.0"
