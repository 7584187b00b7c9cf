"""The https sidecar: TLS in front of an unchanged service on localhost."""

__version__ = "0.1.0"
