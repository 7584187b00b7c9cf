"""The config sidecar: dynamic configuration for an app, without the app's knowledge."""

__version__ = "0.1.0"
