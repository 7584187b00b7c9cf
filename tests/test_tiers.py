"""The tiers CI claims are run, not skipped: a test that needs a service this machine lacks
(a browser, Node.js) is skipped by default and fails, before any of its fixtures starts
anything, when its PAAS_REQUIRE_* variable is 1. Checked by running the suite's own modules
in a pytest of their own, with the service taken away."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent


def outcomes(tmp_path: Path, module: str, env: dict[str, str]) -> dict[str, str]:
    """Each test of ``module`` -> "passed", "skipped: …", "failed: …" or "error: …"."""
    report = tmp_path / f"{module}-{len(list(tmp_path.iterdir()))}.xml"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_REQUIRE_")} | env
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junit-xml={report}", str(TESTS / module)],
        env=environ, cwd=tmp_path, capture_output=True, timeout=120,
    )
    found = {}
    for case in ET.parse(report).iter("testcase"):
        result = next(iter(case), None)
        found[case.get("name", "")] = "passed" if result is None else f"{result.tag}: {result.get('message', '')}"
    return found


def without_playwright(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "blocked" / "playwright"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("playwright is taken away for this test")\n')
    return {"PYTHONPATH": os.pathsep.join([str(blocker.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_a_missing_browser_skips_the_console_tests_and_fails_them_when_required(tmp_path):
    env = without_playwright(tmp_path)
    skipped = outcomes(tmp_path, "test_console.py", env)
    assert len(skipped) == 3 and all(o.startswith("skipped: the playwright package is not installed") for o in skipped.values())
    failed = outcomes(tmp_path, "test_console.py", env | {"PAAS_REQUIRE_BROWSER": "1"})
    assert failed.keys() == skipped.keys()
    assert set(failed.values()) == {"error: failed on setup with \"Failed: PAAS_REQUIRE_BROWSER=1 but the playwright package is not installed\""}


def test_missing_node_skips_the_node_runtime_tests_and_fails_them_when_required(tmp_path):
    env = {"PATH": str(tmp_path / "no-node")}  # nothing on PATH: the tests start nothing before failing
    skipped = outcomes(tmp_path, "test_runtime_apps.py", env)
    assert skipped and all(o.startswith("skipped: no node and no npm on PATH") for o in skipped.values())
    failed = outcomes(tmp_path, "test_runtime_apps.py", env | {"PAAS_REQUIRE_NODE": "1"})
    assert failed.keys() == skipped.keys()
    assert set(failed.values()) == {"error: failed on setup with \"Failed: PAAS_REQUIRE_NODE=1 but no node and no npm on PATH (apt-get install nodejs npm)\""}
