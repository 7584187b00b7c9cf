"""The CLI against a real control plane: output people read, errors as one line, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import free_port
from paas.cli import cli


@pytest.fixture
def run(control_plane, tmp_path, monkeypatch):
    monkeypatch.setenv("PAAS_CONFIG", str(tmp_path / "none"))

    def invoke(*args: str, token: str | None = None):
        runner = CliRunner()
        return runner.invoke(cli, ["--url", control_plane.url, "--token", token or control_plane.token, *args])

    return invoke


def manifest(tmp_path: Path, text: str, name: str = "paas.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_create_list_status_delete(run, tmp_path, control_plane):
    result = run("create", "-f", manifest(tmp_path, "name: cli-app\n"))
    assert result.exit_code == 0, result.output
    assert "created cli-app on port" in result.output
    assert f"  git remote add paas {control_plane.url}/git/cli-app.git\n" in result.output
    assert "  git push -u paas main" in result.output
    listed = run("list")
    assert listed.exit_code == 0 and "cli-app" in listed.output and listed.output.startswith("NAME")
    as_json = json.loads(run("--json", "list").output)
    assert [a["name"] for a in as_json] == ["cli-app"]
    status = run("status", "cli-app")
    assert status.exit_code == 0 and "state:" in status.output and "containers:" in status.output
    assert run("delete", "cli-app", "--yes").output.strip() == "deleted cli-app"
    assert "no apps yet" in run("list").output


def test_invalid_manifest_is_one_clear_error(run, tmp_path):
    result = run("create", "-f", manifest(tmp_path, "name: Bad\nport: 1\n"))
    assert result.exit_code == 1
    assert result.output.startswith("error: invalid manifest: name: must be a DNS label")
    assert "Traceback" not in result.output


def test_missing_file(run, tmp_path):
    result = run("create", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code != 0 and "Traceback" not in result.output


@pytest.mark.parametrize("command", [("status", "ghost"), ("delete", "ghost", "--yes"), ("logs", "ghost")])
def test_unknown_app(run, command):
    result = run(*command)
    assert result.exit_code == 1
    assert result.output == "error: app 'ghost' not found\n"


def test_bad_name_rejected_before_any_request(run):
    result = run("status", "../etc")
    assert result.exit_code == 1 and "invalid app name '../etc'" in result.output


def test_bad_token(run):
    result = run("list", token="wrong-token")
    assert result.exit_code == 1 and result.output == "error: invalid token\n"


def test_unreachable_control_plane(tmp_path, monkeypatch):
    monkeypatch.setenv("PAAS_CONFIG", str(tmp_path / "none"))
    result = CliRunner().invoke(cli, ["--url", "http://127.0.0.1:9", "list"])
    assert result.exit_code == 1
    assert "cannot reach the control plane at http://127.0.0.1:9" in result.output


def test_up_without_docker_is_one_clear_sentence(tmp_path):
    env = os.environ | {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "PAAS_DATA": str(tmp_path / "d"),
                        "PAAS_CONFIG": str(tmp_path / "cfg")}
    result = subprocess.run([sys.executable, "-m", "paas.cli", "up", "--backend", "docker", "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the Docker engine")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, sentence", [
    ("--port", "cannot listen on 127.0.0.1:{port}: Address already in use (use --port)"),
    ("--router-port", "cannot listen on 127.0.0.1:{port} for the router: Address already in use "
                      "(set PAAS_ROUTER_PORT to a free port, or 0 for no router)"),
])
def test_up_on_a_busy_port_is_one_sentence_naming_what_to_change(tmp_path, flag, sentence):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--port": str(free_port()), "--router-port": str(free_port())} | {flag: str(port)}
        env = os.environ | {"PAAS_DATA": str(tmp_path / "d"), "PAAS_CONFIG": str(tmp_path / "cfg")}
        result = subprocess.run([sys.executable, "-m", "paas.cli", "up", *[a for kv in ports.items() for a in kv],
                                 "--router-tls-port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"error: {sentence.format(port=port)}\n"


def paas(*args: str, env: dict[str, str] | None = None, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """The real `paas` command (not click's runner): exit status, stdout and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "paas.cli", *args], env=env or os.environ, stdin=stdin,
                          capture_output=True, text=True, timeout=60)


def test_global_options_work_after_the_command_too(control_plane, tmp_path):
    env = os.environ | {"PAAS_CONFIG": str(tmp_path / "none")}
    env.pop("PAAS_URL", None)
    env.pop("PAAS_TOKEN", None)
    control_plane.create("name: after-cmd\n")
    shown = paas("status", "after-cmd", "--json", "--url", control_plane.url, "--token", control_plane.token, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "after-cmd"
    before = paas("--url", control_plane.url, "--token", control_plane.token, "--json", "list", env=env)
    assert [a["name"] for a in json.loads(before.stdout)] == [a["name"] for a in control_plane.api("GET", "/apps").json()["apps"]]
    assert control_plane.api("DELETE", "/apps/after-cmd").status_code == 200


@pytest.mark.parametrize("args", [("-h",), ("--help",), ("status", "-h"), ("help",), ("help", "status"), ()])
def test_help_is_there_however_asked(args):
    shown = paas(*args)
    assert shown.returncode == 0 and shown.stderr == ""
    usage = shown.stdout.splitlines()[0]
    if "status" in args:
        assert usage == "Usage: paas status [OPTIONS] NAME"
    else:  # click 8.5 brackets COMMAND, earlier releases don't
        assert usage.replace("[COMMAND]", "COMMAND") == "Usage: paas [OPTIONS] COMMAND [ARGS]..."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("status",), "error: Missing argument 'NAME'. (see `paas status -h`)\n"),
        (("frobnicate",), "error: No such command 'frobnicate'. (see `paas -h`)\n"),
        (("logs", "x", "--tail", "many"), "error: Invalid value for '-n' / '--tail': 'many' is not a valid integer range. (see `paas logs -h`)\n"),
        (("help", "nope"), "error: no such command 'nope' (see `paas help -h`)\n"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, message):
    shown = paas(*args)
    assert (shown.returncode, shown.stdout, shown.stderr) == (2, "", message)


@pytest.mark.parametrize("where", ["before", "after"])
def test_with_json_an_error_is_json_on_stderr_with_the_same_exit_status(control_plane, where):
    words = ("status", "ghost")
    shown = paas(*(("--json", *words) if where == "before" else (*words, "--json")), env=control_plane.env)
    assert (shown.returncode, shown.stdout) == (1, "")
    assert json.loads(shown.stderr) == {"error": "app 'ghost' not found", "details": []}
    usage = paas("logs", "x", "--json", "--tail", "many", env=control_plane.env)
    assert (usage.returncode, usage.stdout) == (2, "")
    assert json.loads(usage.stderr)["error"].startswith("Invalid value for '-n' / '--tail'")


def test_releases_lists_newest_first(control_plane, tmp_path):
    from helpers import set_text, stdlib_app, stdlib_manifest

    repo = stdlib_app(tmp_path / "rel", "one")
    control_plane.create(stdlib_manifest("rel"))
    control_plane.push(repo, "rel")
    set_text(repo, "two")
    control_plane.push(repo, "rel")
    shown = control_plane.cli("releases", "rel")
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert rows[0] == ["RELEASE", "STATUS", "REVISION", "CREATED", "MESSAGE"]
    assert [(r[0], r[1], r[-1]) for r in rows[1:]] == [("v2", "live", "two"), ("v1", "superseded", "one")]
    assert control_plane.api("DELETE", "/apps/rel").status_code == 200


def test_delete_without_a_terminal_needs_yes(control_plane):
    control_plane.create("name: keep-me\n")
    refused = control_plane.cli("delete", "keep-me")
    assert refused.returncode == 1
    assert refused.stderr == "error: not deleting keep-me without confirmation: run it on a terminal or pass --yes\n"
    assert control_plane.api("GET", "/apps/keep-me").status_code == 200
    assert control_plane.cli("delete", "keep-me", "--yes").returncode == 0
    assert control_plane.api("GET", "/apps/keep-me").status_code == 404


def test_delete_on_a_terminal_asks_for_the_name(control_plane):
    import pty

    control_plane.create("name: typed\n")

    def on_a_terminal(answer: str) -> tuple[int, str]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "paas.cli", "delete", "typed"], env=control_plane.env,
                                stdin=follower, stdout=follower, stderr=follower, close_fds=True)
        os.close(follower)
        output = b""
        while b"Type its name to confirm" not in output:
            output += os.read(leader, 1024)
        os.write(leader, answer.encode() + b"\n")
        try:
            while chunk := os.read(leader, 1024):
                output += chunk
        except OSError:  # the terminal closed with the process
            pass
        os.close(leader)
        return proc.wait(timeout=30), output.decode()

    code, output = on_a_terminal("typo")
    assert code == 1 and "error: 'typo' is not 'typed': nothing was deleted" in output
    assert control_plane.api("GET", "/apps/typed").status_code == 200
    code, output = on_a_terminal("typed")
    assert code == 0 and "deleted typed" in output
    assert control_plane.api("GET", "/apps/typed").status_code == 404


@pytest.mark.parametrize(("line", "shown"), [
    ("before\x1b]0;pwned\x07middle\x1b[2Jafter", "beforemiddleafter"),  # OSC 0 (the window title), CSI 2J (clear)
    ("\x1b[1;31merror\x1b[0m: \x1b[38;2;255;0;0mred", "error: red"),  # colours, 24-bit too
    ("link \x1b]8;;https://example.com\x1b\\here\x1b]8;;\x1b\\", "link here"),  # OSC 8 ended by ST
    ("\x1bP+q544e\x1b\\ask \x1b_apc\x1b\\\x1b^pm\x1b\\ \x1bXsos\x1b\\done", "ask  done"),  # DCS (a query), APC, PM, SOS
    ("\x9b2J\x9d0;title\x9c8-bit", "8-bit"),  # C1 forms of CSI, OSC and ST
    ("reset\x1bc \x1b7saved\x1b8 \x1b(B\x1b#8", "reset saved "),  # RIS, DECSC/DECRC, charset, DECALN
    ("bell\x07 back\x08space\r cr\x00nul\x7fdel\x85nel\x1b", "bell backspace crnuldelnel"),
    ("tabs\tstay, and so does ünïcødé ✓", "tabs\tstay, and so does ünïcødé ✓"),
    ("\x1b]0;never ended", ""),
])
def test_terminal_escape_sequences_and_controls_are_stripped(line, shown):
    from paas import terminal

    assert terminal.clean(line) == shown


def test_logs_strip_what_the_app_prints_for_the_terminal_unless_raw(control_plane, tmp_path):
    from helpers import git, stdlib_app, stdlib_manifest, wait_for

    repo = stdlib_app(tmp_path / "noisy", "one")
    server = repo / "server.py"
    noise = '\nprint("before\\x1b]0;pwned\\x07middle\\x1b[2Jafter", flush=True)\n\n\nclass Handler'
    server.write_text(server.read_text().replace("\nclass Handler", noise, 1))
    git("commit", "-q", "-am", "noisy", cwd=repo)
    control_plane.create(stdlib_manifest("noisy"))
    control_plane.push(repo, "noisy")
    raw_line = "before\x1b]0;pwned\x07middle\x1b[2Jafter"
    wait_for(lambda: raw_line in control_plane.api("GET", "/apps/noisy/logs").text, 30, what="the app's line in its logs")
    shown = control_plane.cli("logs", "noisy")
    assert shown.returncode == 0, shown.stderr
    assert [line for line in shown.stdout.splitlines() if "before" in line][0].endswith("| beforemiddleafter")
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "pwned" not in shown.stdout
    raw = control_plane.cli("logs", "noisy", "--raw")
    assert raw.returncode == 0 and f"| {raw_line}\n" in raw.stdout
    assert control_plane.api("DELETE", "/apps/noisy").status_code == 200


def test_create_takes_the_repository_password_from_a_file(run, tmp_path, control_plane):
    (tmp_path / "pw").write_text("from-a-file\n")
    text = 'name: pw-file\nsource: {repo: "https://bob@git.example.invalid/r.git"}\n'
    created = run("--json", "create", "-f", manifest(tmp_path, text), "--password-file", str(tmp_path / "pw"))
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["manifest"]["source"]["repo"] == "https://bob:***@git.example.invalid/r.git"
    assert "from-a-file" not in created.output
    assert run("delete", "pw-file", "--yes").exit_code == 0
