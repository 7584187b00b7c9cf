"""Why a sync failed, with the HTTP status `POST /sync` answers for it."""


class SyncError(Exception):
    """A sync failed for a reason worth one log line, not a traceback."""

    http_status = 500


class GitError(SyncError):
    """A local git command failed; the message carries git's own error line."""


class FetchError(GitError):
    """`git fetch` failed: the remote is unreachable, refuses us, or lacks the ref."""

    http_status = 502
