"""paas: a git-backed platform-as-a-service built from the sidecar pattern."""

__version__ = "0.1.0"
