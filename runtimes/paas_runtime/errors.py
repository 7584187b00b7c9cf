"""Expected failures: logged (and recorded) as one clear sentence, never a traceback."""

from __future__ import annotations


class DeployFailed(Exception):
    """A revision could not be brought up; ``reason`` is what a user reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def summary(self) -> str:
        """The reason's first line, for a log line (the rest is output already logged)."""
        return self.reason.split("\n", 1)[0]


class BuildFailed(DeployFailed):
    """Installing the revision's dependencies (or choosing its runtime) failed."""


class StartFailed(DeployFailed):
    """The app exited while starting or did not answer its health check in time."""


class ListenFailed(Exception):
    """The public port cannot be bound (in use, or not ours to take)."""
