"""git-sync: a drop-in subset of kubernetes/git-sync v4, plus `POST /sync`."""

__version__ = "0.1.0"
