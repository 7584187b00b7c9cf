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
