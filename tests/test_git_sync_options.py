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
from git_sync.metrics import Metrics, text_format
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
    opts = options.parse([*BASE, "--rev=v1.2", "--branch=main", "--timeout=30", "--wait=1.5",
                          "--max-sync-failures=4", "--sync-hook-command=/bin/true", "--ssh",
                          "--v=2", "--dest=site"], {}, warnings)

    assert (opts.ref, opts.sync_timeout, opts.period, opts.max_failures) == ("v1.2", 30, 1.5, 4)
    assert (opts.exechook_command, opts.verbose, opts.link) == ("/bin/true", 2, "site")
    assert "flag --rev has been deprecated, use --ref instead" in warnings
    assert "setting --ref from deprecated --rev" in warnings
    assert "flag --ssh has been deprecated, SSH is used whenever --repo is an SSH URL" in warnings
    assert options.parse([*BASE, "--branch=dev"], {}).ref == "dev"


def test_v3_environment_variables_are_read_with_a_warning() -> None:
    warnings: list[str] = []
    env = {"GIT_SYNC_REPO": "https://h/x.git", "GIT_SYNC_ROOT": "/r", "GIT_SYNC_BRANCH": "dev",
           "GIT_SSH_KEY_FILE": "/old/key", "GIT_KNOWN_HOSTS": "false",
           "GITSYNC_DEPTH": "3", "GIT_SYNC_DEPTH": "9"}

    opts = options.parse([], env, warnings)

    assert (opts.repo, opts.ref, opts.ssh_key_file, opts.ssh_known_hosts, opts.depth) == (
        "https://h/x.git", "dev", ["/old/key"], False, 3)
    assert "env GIT_SYNC_REPO has been deprecated, use GITSYNC_REPO instead" in warnings
    assert "env GIT_SSH_KEY_FILE has been deprecated, use GITSYNC_SSH_KEY_FILE instead" in warnings
    assert not any("GIT_SYNC_DEPTH" in w for w in warnings), "the v4 name wins, silently"


@pytest.mark.parametrize(("argv", "env", "message"), [
    ([], {}, "--repo must be specified"),
    (["--repo=x"], {}, "--root must be specified"),
    ([*BASE, "--period=5ms"], {}, "--period must be at least 10ms"),
    ([*BASE, "--init-period=5ms"], {}, "--init-period must be 0 or at least 10ms"),
    (BASE, {"GITSYNC_DEPTH": "one"}, "$GITSYNC_DEPTH: invalid integer"),
    (BASE, {"GITSYNC_PASSWORD": "p"}, "need --username"),
    ([*BASE, "--username=u"], {}, "$GITSYNC_PASSWORD or --password-file must be set"),
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


def test_git_config_goes_to_git_through_the_environment_only() -> None:
    env = gitconfig.environment([("a.b", "1"), ("c.d", "2")])
    more = gitconfig.extend(env, [("e.f", "3")])

    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_1"], env["GIT_CONFIG_VALUE_1"]) == (
        "2", "c.d", "2")
    assert (more["GIT_CONFIG_COUNT"], more["GIT_CONFIG_KEY_2"]) == ("3", "e.f")


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


def test_the_text_format_is_prometheus_clients_own() -> None:
    from prometheus_client.exposition import generate_latest

    metrics = Metrics()
    metrics.sync_done("success", 0.25)
    metrics.fetched()
    metrics.hook_done('we"b\\hook\n', "error")

    def stable(text: bytes) -> bytes:  # process_* samples move between the two calls
        return re.sub(rb"(?m)^(process_\S+) \S+$", rb"\1 X", text)

    assert stable(text_format(metrics.registry)) == stable(generate_latest(metrics.registry))


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
