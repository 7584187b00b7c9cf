"""What a runtime (python, static, …) contributes: detection, a build, a default command."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path


class Runtime(ABC):
    """One language runtime; the supervisor does everything else the same way."""

    name: str

    @abstractmethod
    def detect(self, worktree: Path) -> bool:
        """Whether the code in ``worktree`` looks like it is meant for this runtime."""

    @abstractmethod
    def default_command(self, worktree: Path) -> str:
        """The command used when neither ``PAAS_RUN`` nor a Procfile names one."""

    @abstractmethod
    async def build(
        self, worktree: Path, command: str, cache_dir: Path, env: Mapping[str, str]
    ) -> dict[str, str]:
        """Make ``worktree`` runnable and return the app's environment built on ``env``.

        Raises :class:`~paas_runtime.errors.BuildFailed` with the build's output.
        """
