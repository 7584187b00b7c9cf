"""Prometheus metrics, named as upstream git-sync's, kept in prometheus-client.

prometheus_client's package `__init__` imports its HTTP servers and push
gateway client, and with them `ssl`, `http.server`, `urllib.request` and
`email`: about 7 MB of a sidecar that should idle under 20 MB. `_core()`
imports only the submodules that hold metrics, so the package body runs
only if something asks the package itself for a name. OpenMetrics (what
Prometheus asks for) is encoded by prometheus_client's own light encoder; the
classic text format's encoder lives in the heavy module, so `text_format`
writes that format from the same samples, with numbers as upstream's Go client
writes them (`1`, not prometheus_client's `1.0`).
"""

import importlib.util
import math
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
            "git_sync_count", "How many git syncs completed, partitioned by state (success, error, noop)",
            ["status"], registry=self.registry,
        )
        self._fetches = metrics.Counter(
            "git_fetch_count", "How many git fetches were run", registry=self.registry,
        )
        self._askpass = metrics.Counter(
            "git_sync_askpass_calls",
            "How many git askpass calls completed, partitioned by state (success, error)",
            ["status"], registry=self.registry,
        )
        self._hooks = metrics.Counter(
            "git_sync_hook_run_count",
            "How many hook runs completed, partitioned by name and state (success, error)",
            ["name", "status"], registry=self.registry,
        )
        # As upstream's, a labelled metric has no samples until a label set is first used.

    def sync_done(self, status: str, seconds: float) -> None:
        self._duration.labels(status).observe(seconds)
        self._syncs.labels(status).inc()

    def fetched(self) -> None:
        self._fetches.inc()

    def askpass_done(self, status: str) -> None:
        self._askpass.labels(status).inc()

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
# Counters upstream named without the `_total` suffix (prometheus_client always adds one).
_UNSUFFIXED = {"git_sync_askpass_calls"}


def go_float(value: float) -> str:
    """`value` as Go's Prometheus client writes it: `strconv.FormatFloat(v, 'g', -1, 64)`.

    The shortest digits that read back as `value` (Python's `repr` finds the same ones),
    in plain notation unless the decimal exponent is below -4 or at least 6 (`1`, `0.25`,
    `123456`, `1.234567e+06`, `1e-05`), and `+Inf`, `-Inf`, `NaN`.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # repr() is the shortest text that reads back as `value`, as Go's -1 precision is.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    minus = "-" if value < 0 else ""
    power = point - 1
    if power < -4 or power >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{minus}{digits}{'0' * (point - len(digits))}"
    return f"{minus}{digits[:point]}.{digits[point:]}"


def text_format(registry: Any) -> bytes:
    """The Prometheus text format 0.0.4 of `registry` as upstream's Go client writes it
    (scripts and alerts compare the text): families sorted by name, none without samples,
    each family's series sorted by labels with a summary's `_sum` before its `_count`, and
    numbers as Go formats them (`1`, not prometheus_client's `1.0`)."""
    families = []
    for metric in registry.collect():
        if not metric.samples:
            continue
        if metric.name in _UNSUFFIXED:
            name = metric.name
        else:
            name = metric.name + {"counter": "_total", "info": "_info"}.get(metric.type, "")
        families.append((name, metric))
    out = []
    for name, metric in sorted(families, key=lambda family: family[0]):
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {_TEXT_TYPES.get(metric.type, metric.type)}\n")
        for sample in sorted(metric.samples, key=lambda sample: _series_order(metric.name, sample)):
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
            stamp = f" {int(float(sample.timestamp) * 1000):d}" if sample.timestamp is not None else ""
            sample_name = metric.name if metric.name in _UNSUFFIXED else sample.name
            out.append(f"{sample_name}{{{labels}}}" if labels else sample_name)
            out.append(f" {go_float(float(sample.value))}{stamp}\n")
    return "".join(out).encode("utf-8")


# Within one series, Go writes quantiles or buckets first, then _sum, then _count.
_SUFFIX_ORDER = {"_bucket": 0, "": 0, "_total": 0, "_sum": 1, "_count": 2}


def _series_order(family: str, sample: Any) -> tuple[Any, ...]:
    series = sorted((k, v) for k, v in sample.labels.items() if k not in ("le", "quantile"))
    suffix = sample.name[len(family):]
    bound = sample.labels.get("le") or sample.labels.get("quantile") or ""
    return (series, _SUFFIX_ORDER.get(suffix, 3), float(bound.replace("+Inf", "inf")) if bound else 0.0)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
