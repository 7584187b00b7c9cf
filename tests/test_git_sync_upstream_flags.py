"""Every flag of upstream kubernetes/git-sync v4.7's `--help`, table-driven: ours accepts it,
lists it, reads the same environment variables and starts from the same default.

The table is upstream v4.7's flag list (its `main.go`, `pflag` definitions), written out by
hand: the names, variables (first the one upstream reads, then the older spellings it
still reads with a warning) and defaults as upstream's `--help` prints them.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from git_sync import options

BASE = ["--repo=https://example.com/app.git", "--root=/tmp/git-sync-test-root"]

# flag, environment variables, upstream's default (as --help prints it), a value to give it
UPSTREAM_V47 = [
    ("--add-user", ["GITSYNC_ADD_USER", "GIT_SYNC_ADD_USER"], "false", None),
    ("--askpass-url", ["GITSYNC_ASKPASS_URL", "GIT_SYNC_ASKPASS_URL", "GIT_ASKPASS_URL"], '""', "http://127.0.0.1:9/creds"),
    ("--cookie-file", ["GITSYNC_COOKIE_FILE", "GIT_SYNC_COOKIE_FILE", "GIT_COOKIE_FILE"], "false", None),
    ("--credential", ["GITSYNC_CREDENTIAL"], "[]", '{"url": "https://h", "username": "u", "password": "p"}'),
    ("--depth", ["GITSYNC_DEPTH", "GIT_SYNC_DEPTH"], "1", "0"),
    ("--error-file", ["GITSYNC_ERROR_FILE", "GIT_SYNC_ERROR_FILE"], '""', "err.json"),
    ("--exechook-backoff", ["GITSYNC_EXECHOOK_BACKOFF", "GIT_SYNC_EXECHOOK_BACKOFF"], "3s", "5s"),
    ("--exechook-command", ["GITSYNC_EXECHOOK_COMMAND", "GIT_SYNC_EXECHOOK_COMMAND"], '""', "/bin/true"),
    ("--exechook-timeout", ["GITSYNC_EXECHOOK_TIMEOUT", "GIT_SYNC_EXECHOOK_TIMEOUT"], "30s", "1m"),
    ("--filter", ["GITSYNC_FILTER"], '""', "blob:none"),
    ("--git", ["GITSYNC_GIT", "GIT_SYNC_GIT"], '"git"', "/usr/bin/git"),
    ("--git-config", ["GITSYNC_GIT_CONFIG", "GIT_SYNC_GIT_CONFIG"], '""', "a.b:c"),
    ("--git-gc", ["GITSYNC_GIT_GC", "GIT_SYNC_GIT_GC"], '"always"', "auto"),
    ("--github-app-application-id", ["GITSYNC_GITHUB_APP_APPLICATION_ID"], "0", None),
    ("--github-app-client-id", ["GITSYNC_GITHUB_APP_CLIENT_ID"], '""', None),
    ("--github-app-installation-id", ["GITSYNC_GITHUB_APP_INSTALLATION_ID"], "0", None),
    ("--github-app-private-key-file", ["GITSYNC_GITHUB_APP_PRIVATE_KEY_FILE"], '""', "/keys/app.pem"),
    ("--github-base-url", ["GITSYNC_GITHUB_BASE_URL"], '"https://api.github.com/"', "https://ghe.example.com/api/v3/"),
    ("--group-write", ["GITSYNC_GROUP_WRITE", "GIT_SYNC_GROUP_WRITE"], "false", None),
    ("--http-bind", ["GITSYNC_HTTP_BIND", "GIT_SYNC_HTTP_BIND"], '""', ":8079"),
    ("--http-metrics", ["GITSYNC_HTTP_METRICS", "GIT_SYNC_HTTP_METRICS"], "false", None),
    ("--http-pprof", ["GITSYNC_HTTP_PPROF", "GIT_SYNC_HTTP_PPROF"], "false", None),
    ("--init-max-failures", ["GITSYNC_INIT_MAX_FAILURES"], "0", "-1"),
    ("--init-period", ["GITSYNC_INIT_PERIOD"], "0s", "1s"),
    ("--link", ["GITSYNC_LINK", "GIT_SYNC_LINK"], '""', "current"),
    ("--max-failures", ["GITSYNC_MAX_FAILURES", "GIT_SYNC_MAX_FAILURES"], "0", "-1"),
    ("--one-time", ["GITSYNC_ONE_TIME", "GIT_SYNC_ONE_TIME"], "false", None),
    ("--password-file", ["GITSYNC_PASSWORD_FILE", "GIT_SYNC_PASSWORD_FILE"], '""', "/secret/pw"),
    ("--period", ["GITSYNC_PERIOD", "GIT_SYNC_PERIOD"], "10s", "1m30s"),
    ("--ref", ["GITSYNC_REF"], '"HEAD"', "main"),
    ("--repo", ["GITSYNC_REPO", "GIT_SYNC_REPO"], '""', "https://example.com/other.git"),
    ("--root", ["GITSYNC_ROOT", "GIT_SYNC_ROOT"], '""', "/tmp/other-root"),
    ("--sparse-checkout-file", ["GITSYNC_SPARSE_CHECKOUT_FILE", "GIT_SYNC_SPARSE_CHECKOUT_FILE"], '""', "/cfg/sparse"),
    ("--ssh-key-file", ["GITSYNC_SSH_KEY_FILE", "GIT_SYNC_SSH_KEY_FILE", "GIT_SSH_KEY_FILE"], "[/etc/git-secret/ssh]", "/k"),
    ("--ssh-known-hosts", ["GITSYNC_SSH_KNOWN_HOSTS", "GIT_SYNC_KNOWN_HOSTS", "GIT_KNOWN_HOSTS"], "true", "false"),
    ("--ssh-known-hosts-file", ["GITSYNC_SSH_KNOWN_HOSTS_FILE", "GIT_SYNC_SSH_KNOWN_HOSTS_FILE", "GIT_SSH_KNOWN_HOSTS_FILE"],
     '"/etc/git-secret/known_hosts"', "/kh"),
    ("--stale-worktree-timeout", ["GITSYNC_STALE_WORKTREE_TIMEOUT"], "0s", "1m"),
    ("--submodules", ["GITSYNC_SUBMODULES", "GIT_SYNC_SUBMODULES"], '"recursive"', "off"),
    ("--sync-on-signal", ["GITSYNC_SYNC_ON_SIGNAL", "GIT_SYNC_SYNC_ON_SIGNAL"], '""', "SIGHUP"),
    ("--sync-timeout", ["GITSYNC_SYNC_TIMEOUT", "GIT_SYNC_SYNC_TIMEOUT"], "2m0s", "30s"),
    ("--touch-file", ["GITSYNC_TOUCH_FILE", "GIT_SYNC_TOUCH_FILE"], '""', "touched"),
    ("--username", ["GITSYNC_USERNAME", "GIT_SYNC_USERNAME"], '""', None),
    ("--verbose", ["GITSYNC_VERBOSE"], "0", "2"),
    ("--webhook-backoff", ["GITSYNC_WEBHOOK_BACKOFF", "GIT_SYNC_WEBHOOK_BACKOFF"], "3s", "5s"),
    ("--webhook-method", ["GITSYNC_WEBHOOK_METHOD", "GIT_SYNC_WEBHOOK_METHOD"], '"POST"', "PUT"),
    ("--webhook-success-status", ["GITSYNC_WEBHOOK_SUCCESS_STATUS", "GIT_SYNC_WEBHOOK_SUCCESS_STATUS"], "200", "204"),
    ("--webhook-timeout", ["GITSYNC_WEBHOOK_TIMEOUT", "GIT_SYNC_WEBHOOK_TIMEOUT"], "1s", "2s"),
    ("--webhook-url", ["GITSYNC_WEBHOOK_URL", "GIT_SYNC_WEBHOOK_URL"], '""', "http://127.0.0.1:9/hook"),
]
# Upstream's pre-publish exechook (kubernetes/git-sync#990, after v4.7.0): ours has it too.
PRE_PUBLISH = [
    ("--pre-publish-exechook-backoff", ["GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF"], "3s", "5s"),
    ("--pre-publish-exechook-command", ["GITSYNC_PRE_PUBLISH_EXECHOOK_COMMAND"], '""', "/bin/true"),
    ("--pre-publish-exechook-timeout", ["GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT"], "30s", "1m"),
]
ALWAYS_THERE = {"--help", "--man", "--version"}
# What a flag needs beside it to be valid, as upstream checks.
NEEDS = {
    "--http-metrics": ["--http-bind=:8079"],
    "--http-pprof": ["--http-bind=:8079"],
    "--password-file": ["--username=u"],
    "--username": ["--password-file=/secret/pw"],
    "--github-app-application-id": ["--github-app-installation-id=2", "--github-app-private-key-file=/k.pem"],
    "--github-app-client-id": ["--github-app-installation-id=2", "--github-app-private-key-file=/k.pem"],
    "--github-app-installation-id": ["--github-app-client-id=c", "--github-app-private-key-file=/k.pem"],
}
VALUES = {"--github-app-application-id": "1", "--github-app-client-id": "Iv1.abc", "--github-app-installation-id": "2",
          "--username": "u"}
FIELDS = {options.flag_name(f): f for f in dataclasses.fields(options.Options)}


def help_text() -> str:
    return subprocess.run([sys.executable, "-m", "git_sync", "--help"], capture_output=True, text=True,
                          check=True, timeout=30).stdout


@pytest.fixture(scope="module")
def shown() -> str:
    return help_text()


@pytest.mark.parametrize(("flag", "env", "default", "value"), UPSTREAM_V47 + PRE_PUBLISH, ids=lambda v: str(v))
def test_each_upstream_flag_is_accepted_listed_and_defaults_the_same(shown, flag, env, default, value):
    field = FIELDS[flag]
    assert flag in shown, f"{flag} missing from --help"
    assert options.env_name(field) == env[0]
    assert list(options.legacy_env_names(field)) == env[1:]
    ours = options.shown_default(field)
    if field.type is str and ours != '""':
        ours = f'"{ours}"'  # pflag quotes a string's default
    parse = field.metadata.get("parse") or options._PARSERS.get(field.type)
    if parse is options.parse_duration:
        assert options.parse_duration(ours) == options.parse_duration(default), flag
    elif flag == "--ssh-key-file":  # pflag writes a list's default in brackets
        assert f"[{ours}]" == default, flag
    else:
        assert ours == default, flag
    given = [flag] if value is None and field.type is bool else [f"{flag}={value if value is not None else VALUES[flag]}"]
    opts = options.parse([*BASE, *NEEDS.get(flag, []), *given], {})
    assert getattr(opts, field.name) != getattr(options.parse(BASE, {}), field.name) or flag in ("--repo", "--root")


def test_our_help_lists_no_flag_upstream_lacks(shown):
    listed = {word.rstrip(",") for line in shown.splitlines() for word in line.split() if word.startswith("--")}
    upstream = {flag for flag, *_ in UPSTREAM_V47 + PRE_PUBLISH} | ALWAYS_THERE
    assert {f for f in listed if f in FIELDS or f in ALWAYS_THERE} == upstream


@pytest.mark.parametrize("env", ["GITSYNC_PASSWORD", "GITSYNC_GITHUB_APP_PRIVATE_KEY"])
def test_upstreams_hidden_test_flags_set_environment_only_settings(env):
    flag = f"--__env__{env}"
    assert flag not in help_text()
    field = next(f for f in dataclasses.fields(options.Options) if options.env_name(f) == env)
    extra = ["--username=u"] if env == "GITSYNC_PASSWORD" else []
    opts = options.parse([*BASE, *extra, f"{flag}=from-the-flag"], {env: "from-the-env"})
    assert getattr(opts, field.name) == "from-the-flag"
    empty = options.parse([*BASE, *extra, f"{flag}="], {env: "from-the-env"})
    assert getattr(empty, field.name) == "from-the-env"  # an empty flag leaves the variable


def test_question_mark_is_help():
    result = subprocess.run([sys.executable, "-m", "git_sync", "-?"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == help_text()
