"""git-sync's pieces in process: options, --git-config, SSH, metrics format, --add-user, docs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from git_sync import gitconfig, options
from git_sync.auth import SSHConfigError, ssh_command
from git_sync.manual import manual
from git_sync.metrics import Metrics, go_float, text_format
from git_sync.passwd import add_user

README = Path(__file__).resolve().parents[1] / "sidecar-git-sync" / "README.md"
BASE = ["--repo=https://example.com/org/app.git", "--root=/r"]


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("1m", 60), ("1m30s", 90), ("1.5h", 5400), ("0", 0),
    ("250us", 0.00025), ("-2s", -2), ("0s", 0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert options.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1m 30s", "1.2.3s"])
def test_malformed_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        options.parse_duration(text)


@pytest.mark.parametrize(("text", "value"), [("42", 42), ("-1", -1), ("0x1f", 31), ("0775", 509),
                                             ("0", 0)])
def test_integers_as_go_reads_them(text: str, value: int) -> None:
    assert options.parse_int(text) == value


@pytest.mark.parametrize("text", ["SIGHUP", "HUP", "hup", "1"])
def test_signals_by_name_short_name_or_number(text: str) -> None:
    assert options.parse_signal(text) == signal.SIGHUP


# --- options ----------------------------------------------------------------------------


def test_defaults_match_upstream() -> None:
    opts = options.parse(BASE, {})

    assert (opts.ref, opts.link, opts.period, opts.sync_timeout) == ("HEAD", "app.git", 10, 120)
    assert (opts.depth, opts.submodules, opts.max_failures, opts.one_time) == (1, "recursive", 0, False)
    assert (opts.init_period, opts.init_max_failures, opts.stale_worktree_timeout) == (0, 0, 0)
    assert (opts.exechook_timeout, opts.exechook_backoff) == (30, 3)
    assert (opts.webhook_method, opts.webhook_success_status) == ("POST", 200)
    assert (opts.webhook_timeout, opts.webhook_backoff) == (1, 3)
    assert opts.ssh_key_file == ["/etc/git-secret/ssh"]
    assert (opts.ssh_known_hosts, opts.ssh_known_hosts_file) == (True, "/etc/git-secret/known_hosts")
    assert (opts.sync_on_signal, opts.touch_file, opts.error_file, opts.git_config) == ("",) * 4
    assert (opts.add_user, opts.group_write, opts.verbose) == (False, False, 0)


def test_flag_forms_and_environment() -> None:
    env = {"GITSYNC_REPO": "https://h/app", "GITSYNC_ROOT": "/r", "GITSYNC_PERIOD": "1m",
           "GITSYNC_HTTP_METRICS": "false", "GITSYNC_MAX_FAILURES": "5"}

    opts = options.parse(["--period=2s", "--one-time", "--max-failures", "-1", "-v"], env)

    assert (opts.repo, opts.period, opts.http_metrics) == ("https://h/app", 2, False)
    assert (opts.one_time, opts.max_failures, opts.verbose) == (True, -1, 1)
    assert options.parse(["--one-time=false", "-v", "3"], env).one_time is False


def test_ssh_key_file_repeats_as_a_flag_and_is_a_list_in_the_environment() -> None:
    env = {"GITSYNC_SSH_KEY_FILE": "/k/a:/k/b"}

    assert options.parse(BASE, env).ssh_key_file == ["/k/a", "/k/b"]
    assert options.parse([*BASE, "--ssh-key-file=/x", "--ssh-key-file", "/y"], env).ssh_key_file \
        == ["/x", "/y"]


def test_v3_flags_map_onto_v4_options_with_warnings() -> None:
    warnings: list[str] = []
    opts = options.parse([*BASE, "--rev=v1.2", "--timeout=30", "--wait=1.5",
                          "--max-sync-failures=4", "--sync-hook-command=/bin/true", "--ssh",
                          "--v=2", "--dest=site", "--password=pw", "--username=u"], {}, warnings)

    assert (opts.ref, opts.sync_timeout, opts.period, opts.max_failures) == ("v1.2", 30, 1.5, 4)
    assert (opts.exechook_command, opts.verbose, opts.link, opts.password) == ("/bin/true", 2, "site", "pw")
    # pflag's words for a deprecated flag, then upstream's own line for what it set
    assert "Flag --rev has been deprecated, use --ref instead" in warnings
    assert "setting --ref from deprecated --rev" in warnings
    assert "Flag --ssh has been deprecated, no longer necessary" in warnings
    assert "Flag --password has been deprecated, use --password-file or $GITSYNC_PASSWORD instead" in warnings
    assert "setting $GITSYNC_PASSWORD from deprecated --password" in warnings
    assert options.parse([*BASE, "--branch=dev"], {}).ref == "dev"
    assert options.parse([*BASE, "--branch=dev", "--rev=HEAD"], {}).ref == "dev"
    with pytest.raises(options.ConfigError, match="deprecated flag combo: can't set --ref"):
        options.parse([*BASE, "--branch=dev", "--rev=v1"], {})


def test_v3_environment_variables_are_read_with_a_warning() -> None:
    warnings: list[str] = []
    env = {"GIT_SYNC_REPO": "https://h/x.git", "GIT_SYNC_ROOT": "/r", "GIT_SYNC_BRANCH": "dev",
           "GIT_SSH_KEY_FILE": "/old/key", "GIT_KNOWN_HOSTS": "false",
           "GITSYNC_DEPTH": "3", "GIT_SYNC_DEPTH": "9"}

    opts = options.parse([], env, warnings)

    assert (opts.repo, opts.ref, opts.ssh_key_file, opts.ssh_known_hosts, opts.depth) == (
        "https://h/x.git", "dev", ["/old/key"], False, 3)
    assert "env $GIT_SYNC_REPO has been deprecated, use $GITSYNC_REPO instead" in warnings
    assert "env $GIT_SSH_KEY_FILE has been deprecated, use $GITSYNC_SSH_KEY_FILE instead" in warnings
    assert not any("GIT_SYNC_DEPTH" in w for w in warnings), "the v4 name wins, silently"


@pytest.mark.parametrize(("argv", "env", "message"), [
    ([], {}, "--repo must be specified"),
    (["--repo=x"], {}, "--root must be specified"),
    ([*BASE, "--period=5ms"], {}, "--period must be at least 10ms"),
    ([*BASE, "--init-period=5ms"], {}, "--init-period must be 0 or at least 10ms"),
    (BASE, {"GITSYNC_DEPTH": "one"}, "$GITSYNC_DEPTH: invalid integer"),
    (BASE, {"GITSYNC_PASSWORD": "p"}, "invalid flag: $GITSYNC_PASSWORD may only be specified when --username is specified"),
    ([*BASE, "--password-file=/p"], {}, "invalid flag: --password-file may only be specified when --username"),
    ([*BASE, "--username=u"], {}, "required flag: $GITSYNC_PASSWORD or --password-file must be specified when --username"),
    ([*BASE, "--http-metrics"], {}, "required flag: --http-bind must be specified when --http-metrics is set"),
    ([*BASE, "--http-pprof"], {}, "required flag: --http-bind must be specified when --http-pprof is set"),
    ([*BASE, "--credential=nope"], {}, "--credential: not a JSON object or list"),
    ([*BASE, '--credential={"url": "https://h", "username": "u", "pass": "x"}'], {}, "unknown field 'pass'"),
    ([*BASE, '--credential={"url": "https://h", "username": "u"}'], {},
     "invalid flag: --credential password or password-file must be specified"),
    ([*BASE, '--credential={"username": "u", "password": "p"}'], {}, "invalid flag: --credential URL must be specified"),
    ([*BASE, "--github-app-client-id=c"], {}, "invalid flag: --github-app-installation-id must be specified"),
    ([*BASE, "--github-app-installation-id=3"], {},
     "invalid flag: --github-app-installation-id may only be specified when --github-app-private-key-file"),
    ([*BASE, "--one-time=maybe"], {}, "invalid boolean 'maybe'"),
    ([*BASE, "--rep=x"], {}, "unrecognized arguments: --rep=x"),
    ([*BASE, "--submodules=some"], {}, "invalid value 'some' (want one of recursive"),
    (BASE, {"GITSYNC_GIT_GC": "never"}, "$GITSYNC_GIT_GC: invalid value 'never'"),
    ([*BASE, "--sync-on-signal=SIGNOPE"], {}, "--sync-on-signal must be a valid signal"),
    ([*BASE, "--exechook-command=x", "--exechook-backoff=100ms"], {},
     "--exechook-backoff must be at least 1s"),
    ([*BASE, "--webhook-url=http://h", "--webhook-timeout=10ms"], {},
     "--webhook-timeout must be at least 1s"),
    ([*BASE, "--webhook-url=http://h", "--webhook-success-status=-2"], {},
     "--webhook-success-status must be a valid HTTP code or 0"),
    ([*BASE, "--change-permissions=0775"], {}, "--change-permissions is no longer supported"),
    ([*BASE, '--git-config="a.b'], {}, "--git-config: unexpected end of quoted string"),
])
def test_configuration_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(options.ConfigError, match=re.escape(message)):
        options.parse(argv, env)


def test_webhook_success_status_minus_one_means_fire_and_forget_as_in_v3() -> None:
    opts = options.parse([*BASE, "--webhook-url=http://h", "--webhook-success-status=-1"], {})

    assert opts.webhook_success_status == 0


def test_credentials_are_moved_out_of_the_repo_url() -> None:
    opts = options.parse(["--repo=https://me:p%40ss@example.com/app.git", "--root=/r"], {})

    assert (opts.repo, opts.username, opts.password) == (
        "https://example.com/app.git", "me", "p@ss")


@pytest.mark.parametrize(("url", "ssh"), [
    ("ssh://git@host/repo.git", True), ("git@github.com:org/repo.git", True),
    ("host:repo", True), ("git+ssh://host/r", True), ("https://host/repo.git", False),
    ("git://host/repo.git", False), ("/srv/repo.git", False), ("file:///srv/r", False),
])
def test_ssh_urls_are_recognised(url: str, ssh: bool) -> None:
    assert options.is_ssh_url(url) is ssh


# --- git config and ssh -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "pairs"), [
    ("", []),
    ("a.b:c", [("a.b", "c")]),
    ("a.b:c,d.e:f", [("a.b", "c"), ("d.e", "f")]),
    ('"url.https://x/.insteadOf":git://x/', [("url.https://x/.insteadOf", "git://x/")]),
    ('a.b:"one, two",c.d:e', [("a.b", "one, two"), ("c.d", "e")]),
    (r"a.b:x\,y\ty\n\\", [("a.b", "x,y\ty\n\\")]),
    ("http.extraHeader:X-A: b", [("http.extraHeader", "X-A: b")]),
])
def test_git_config_is_parsed_as_upstream_does(text: str, pairs: list[tuple[str, str]]) -> None:
    assert gitconfig.parse(text) == pairs


@pytest.mark.parametrize(("text", "message"), [
    ("a.b", "unexpected end of key"),
    ("a.b:", "key 'a.b': no value"),
    ('"a.b', "unexpected end of quoted string"),
    ('"a.b"x', "expected ':'"),
    ('a.b:"c"d', "expected ','"),
    (r"a.b:c\q", "unsupported escape character"),
    ("a.b:c\\", "unexpected end of escape sequence"),
])
def test_malformed_git_config(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        gitconfig.parse(text)


def test_git_config_goes_to_a_private_global_file_that_git_reads() -> None:
    pairs = [("a.b", "1"), ("url.https://h/x.insteadOf", "git://h/x"), ("c.d", 'quote " and \\')]
    env = gitconfig.private_global("git", pairs, os.environ)
    path = Path(env["GIT_CONFIG_GLOBAL"])

    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and (path.parent.stat().st_mode & 0o777) == 0o700
    listed = subprocess.run(["git", "config", "--global", "--list"], env={**os.environ, **env},
                            capture_output=True, text=True, check=True).stdout
    assert listed.splitlines() == ["a.b=1", "url.https://h/x.insteadof=git://h/x", 'c.d=quote " and \\']
    more = gitconfig.extend({}, [("e.f", "3")])  # per-command settings (credentials)
    assert (more["GIT_CONFIG_COUNT"], more["GIT_CONFIG_KEY_0"]) == ("1", "e.f")


def test_ssh_command_checks_files_only_for_ssh_repos(tmp_path: Path) -> None:
    key, hosts = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    hosts.write_text("h")
    missing = str(tmp_path / "missing")

    assert ssh_command([str(key), missing], True, str(hosts), required=False) == (
        f"ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile={hosts} -i {key}")
    assert ssh_command([missing], True, missing, required=False).startswith("ssh -o Strict")
    assert ssh_command([missing], False, "", required=True, default_key_files=[missing]) == (
        "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")
    with pytest.raises(SSHConfigError, match="can't access SSH key file"):
        ssh_command([missing], False, "", required=True)
    with pytest.raises(SSHConfigError, match="known_hosts"):
        ssh_command([str(key)], True, missing, required=True)


# --- metrics, --add-user ----------------------------------------------------------------


# What upstream's Go client writes for the same observations (names and HELP from upstream's
# main.go and pkg/hook; ordering and number formatting from client_golang's text encoder).
UPSTREAM_METRICS_TEXT = """\
# HELP git_fetch_count_total How many git fetches were run
# TYPE git_fetch_count_total counter
git_fetch_count_total 2
# HELP git_sync_askpass_calls How many git askpass calls completed, partitioned by state (success, error)
# TYPE git_sync_askpass_calls counter
git_sync_askpass_calls{status="error"} 1
git_sync_askpass_calls{status="success"} 1
# HELP git_sync_count_total How many git syncs completed, partitioned by state (success, error, noop)
# TYPE git_sync_count_total counter
git_sync_count_total{status="error"} 1
git_sync_count_total{status="success"} 2
# HELP git_sync_duration_seconds Summary of git_sync durations
# TYPE git_sync_duration_seconds summary
git_sync_duration_seconds_sum{status="error"} 1e-05
git_sync_duration_seconds_count{status="error"} 1
git_sync_duration_seconds_sum{status="success"} 1.25
git_sync_duration_seconds_count{status="success"} 2
# HELP git_sync_hook_run_count_total How many hook runs completed, partitioned by name and state (success, error)
# TYPE git_sync_hook_run_count_total counter
git_sync_hook_run_count_total{name="exechook",status="success"} 1
git_sync_hook_run_count_total{name="webhook",status="error"} 3
"""


def test_metrics_read_as_upstreams_byte_for_byte() -> None:
    metrics = Metrics()
    metrics.sync_done("success", 0.25)
    metrics.sync_done("error", 0.00001)
    metrics.sync_done("success", 1.0)
    metrics.fetched()
    metrics.fetched()
    for status in ("success", "error"):
        metrics.askpass_done(status)
    for _ in range(3):
        metrics.hook_done("webhook", "error")
    metrics.hook_done("exechook", "success")

    text = text_format(metrics.registry).decode()
    ours = "".join(line + "\n" for line in text.splitlines() if "process_" not in line)
    assert ours == UPSTREAM_METRICS_TEXT


def test_a_fresh_sidecar_shows_labelled_metrics_only_once_used() -> None:
    text = text_format(Metrics().registry).decode()
    assert "git_fetch_count_total 0\n" in text
    assert "git_sync_count_total" not in text and "git_sync_hook_run_count_total" not in text


@pytest.mark.parametrize(("value", "go"), [
    (1.0, "1"), (0.0, "0"), (-1.0, "-1"), (2.0, "2"), (0.25, "0.25"), (100.0, "100"),
    (123456.0, "123456"), (1234567.0, "1.234567e+06"), (1e6, "1e+06"), (0.0001, "0.0001"),
    (0.00001234, "1.234e-05"), (1701234567.89, "1.70123456789e+09"), (-2.5, "-2.5"),
    (0.1 + 0.2, "0.30000000000000004"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
    (float("nan"), "NaN"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
])
def test_numbers_are_written_as_gos_strconv_formatfloat_g(value: float, go: str) -> None:
    assert go_float(value) == go


def test_starting_git_sync_imports_neither_ssl_nor_http_server() -> None:
    code = ("import sys; from git_sync import main, server; from git_sync.metrics import Metrics; "
            "Metrics(); import prometheus_client; "
            "print(sorted(m for m in ('ssl', 'http.server', 'http.client', 'email', "
            "'urllib.request') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=30)

    assert result.stdout.strip() == "[]"


def test_the_prometheus_client_package_still_works_for_others() -> None:
    code = ("from git_sync.metrics import Metrics; Metrics(); "
            "from prometheus_client import Counter, generate_latest, REGISTRY; "
            "Counter('x', 'x').inc(); print(b'x_total 1.0' in generate_latest(REGISTRY))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=30)

    assert result.stdout.strip() == "True"


def test_add_user_appends_a_record_for_an_unknown_uid_once(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    monkeypatch.setattr(os, "getuid", lambda: 4242)
    monkeypatch.setattr(os, "getgid", lambda: 4343)
    monkeypatch.setenv("HOME", "/tmp")

    assert add_user(passwd) is True
    assert add_user(passwd) is False
    assert passwd.read_text().splitlines()[1:] == ["git-sync:x:4242:4343::/tmp:/sbin/nologin"]


# --- documentation ----------------------------------------------------------------------


def test_readme_documents_every_option() -> None:
    readme = README.read_text()
    rows = {line.split("|")[2].strip(" `"): line for line in readme.splitlines()
            if line.startswith("| ") and line.count("|") >= 5}
    for flag, env, default, _help in options.describe():
        assert env in rows, f"{env} has no row in the README's table"
        assert flag is None or f"`{flag}`" in rows[env], flag
        assert f"`{default}`" in rows[env], f"{env}: default {default} not documented"
    for flag, env, _advice in options.describe_deprecated():
        assert f"`{flag}`" in readme, f"deprecated {flag} not documented"
        assert not env or f"`{env}`" in readme, f"deprecated {env} not documented"


def test_the_manual_describes_every_flag() -> None:
    text = manual()

    for flag, env, default, _help in options.describe():
        assert f"Default: {default}." in " ".join(text.split())
        assert f"{flag}, ${env}" in text if flag else f"${env}" in text
    assert all(len(line) <= 80 for line in text.splitlines())
