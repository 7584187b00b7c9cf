"""Prometheus metrics, named as upstream git-sync's."""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    Summary,
    disable_created_metrics,
    generate_latest,
)

SYNC_STATUSES = ("success", "error", "noop")


class Metrics:
    """git-sync's metrics in a registry of their own (no global state to share)."""

    def __init__(self) -> None:
        disable_created_metrics()  # upstream exports no *_created series
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._duration = Summary(
            "git_sync_duration_seconds", "Summary of git_sync durations",
            ["status"], registry=self.registry,
        )
        self._syncs = Counter(
            "git_sync_count", "How many git syncs completed, by status",
            ["status"], registry=self.registry,
        )
        self._fetches = Counter(
            "git_fetch_count", "How many git fetches were run", registry=self.registry,
        )
        for status in SYNC_STATUSES:  # export zeroes before the first sync
            self._duration.labels(status)
            self._syncs.labels(status)

    def sync_done(self, status: str, seconds: float) -> None:
        self._duration.labels(status).observe(seconds)
        self._syncs.labels(status).inc()

    def fetched(self) -> None:
        self._fetches.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
