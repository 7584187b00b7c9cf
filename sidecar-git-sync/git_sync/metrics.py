"""Prometheus metrics, named as upstream git-sync's, kept in prometheus-client.

prometheus_client's package `__init__` imports its HTTP servers and push
gateway client, and with them `ssl`, `http.server`, `urllib.request` and
`email`: about 7 MB of a sidecar that should idle under 20 MB. `_core()`
imports only the submodules that hold metrics, so the package body runs
only if something asks the package itself for a name. OpenMetrics (what
Prometheus asks for) is encoded by prometheus_client's own light encoder; the
classic text format's encoder lives in the heavy module, so `text_format`
writes that format from the same samples (a test holds it byte-identical to
prometheus_client's).
"""

import importlib.util
import sys
from typing import Any

SYNC_STATUSES = ("success", "error", "noop")
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _core() -> tuple[Any, Any, Any]:
    """prometheus_client's metrics, registry and process collector modules, without its servers."""
    if "prometheus_client" not in sys.modules:
        spec = importlib.util.find_spec("prometheus_client")
        if spec is None or spec.loader is None:
            raise ImportError("prometheus_client is not installed")
        package = importlib.util.module_from_spec(spec)
        sys.modules["prometheus_client"] = package

        def lazy(name: str) -> Any:
            # `from . import values` inside the package asks for submodules by
            # attribute: import just that one. Anything else means someone wants
            # the package's own names: run its body after all.
            if name.startswith("__") and name != "__all__":
                raise AttributeError(name)
            if importlib.util.find_spec(f"prometheus_client.{name}") is not None:
                return importlib.import_module(f"prometheus_client.{name}")
            del package.__getattr__
            spec.loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = lazy  # type: ignore[method-assign]
    metrics = importlib.import_module("prometheus_client.metrics")
    registry = importlib.import_module("prometheus_client.registry")
    process = importlib.import_module("prometheus_client.process_collector")
    return metrics, registry, process


class Metrics:
    """git-sync's metrics in a registry of their own (no global state to share)."""

    def __init__(self) -> None:
        metrics, registry, process = _core()
        metrics.disable_created_metrics()  # upstream exports no *_created series
        self.registry = registry.CollectorRegistry()
        process.ProcessCollector(registry=self.registry)
        self._duration = metrics.Summary(
            "git_sync_duration_seconds", "Summary of git_sync durations",
            ["status"], registry=self.registry,
        )
        self._syncs = metrics.Counter(
            "git_sync_count", "How many git syncs completed, by status",
            ["status"], registry=self.registry,
        )
        self._fetches = metrics.Counter(
            "git_fetch_count", "How many git fetches were run", registry=self.registry,
        )
        self._hooks = metrics.Counter(
            "git_sync_hook_run_count", "How many hook runs completed, by name and status",
            ["name", "status"], registry=self.registry,
        )
        for status in SYNC_STATUSES:  # export zeroes before the first sync
            self._duration.labels(status)
            self._syncs.labels(status)

    def sync_done(self, status: str, seconds: float) -> None:
        self._duration.labels(status).observe(seconds)
        self._syncs.labels(status).inc()

    def fetched(self) -> None:
        self._fetches.inc()

    def hook_done(self, name: str, status: str) -> None:
        self._hooks.labels(name, status).inc()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type): OpenMetrics if `accept` asks for it, else the text format."""
        if "application/openmetrics-text" in accept:
            from prometheus_client.openmetrics.exposition import generate_latest

            return generate_latest(self.registry), OPENMETRICS_CONTENT_TYPE
        return text_format(self.registry), TEXT_CONTENT_TYPE


_TEXT_TYPES = {"unknown": "untyped", "info": "gauge", "stateset": "gauge",
               "gaugehistogram": "histogram"}


def text_format(registry: Any) -> bytes:
    """The Prometheus text format 0.0.4 of `registry`, as prometheus_client writes it."""
    from prometheus_client.utils import floatToGoString

    out = []
    for metric in registry.collect():
        name = metric.name + {"counter": "_total", "info": "_info"}.get(metric.type, "")
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {_TEXT_TYPES.get(metric.type, metric.type)}\n")
        for sample in metric.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
            stamp = f" {int(float(sample.timestamp) * 1000):d}" if sample.timestamp is not None else ""
            out.append(f"{sample.name}{{{labels}}}" if labels else sample.name)
            out.append(f" {floatToGoString(sample.value)}{stamp}\n")
    return "".join(out).encode("utf-8")


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
