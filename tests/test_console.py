"""The web console in a real browser (Debian's Chromium driven by Playwright) against a real
`paas up` and real `git push`es: a person's whole story, hostile text rendered as text, and
the layout at 390 px. Controls are found by role and accessible name, as a screen reader
finds them; every test fails on any JavaScript error the page logs.

With PAAS_SCREENSHOTS=1 the tests also save the README's screenshots under docs/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import RELOADING_SERVER, git, reloading_app, seen, stdlib_manifest, wait_for

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # tests/conftest.py skips these tests, or fails them with PAAS_REQUIRE_BROWSER=1
    expect = sync_playwright = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DOCS = Path(__file__).resolve().parent.parent / "docs"
# Chromium reports the 4xx answers the console asks for on purpose (a refused manifest) as
# "Failed to load resource"; those are the server speaking, not a script failing.
EXPECTED_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of 422\b")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def console(browser, control_plane):
    """Yields open(width) -> a logged-in page; afterwards, no page logged a script error and
    no request carried the token in its URL."""
    errors: list[str] = []
    urls: list[str] = []
    contexts = []

    def open_page(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and not EXPECTED_STATUS.match(m.text) and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: urls.append(r.url))
        page.goto(control_plane.url + "/")
        page.get_by_label("Token").fill(control_plane.token)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Apps")).to_be_visible()
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == []
    assert urls and not [u for u in urls if control_plane.token in u]


def screenshot(page, name: str) -> None:
    if os.environ.get("PAAS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


def release_row(page, number: int):
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=f"v{number}", exact=True))


def commit_server(repo: Path, source: str, message: str) -> None:
    (repo / "server.py").write_text(source)
    git("commit", "-q", "-am", message, cwd=repo)


def test_a_person_runs_an_app_from_the_console(console, control_plane, tmp_path):
    page = console()
    page.get_by_role("button", name="New app").click()
    manifest = page.get_by_label("Manifest")
    manifest.fill("name: Not_A_Name\nport: 80\n")
    page.get_by_role("button", name="Create").click()
    problems = page.get_by_role("alert").filter(has_text="The manifest was not accepted")
    expect(problems.locator("li", has=page.locator("code", has_text=re.compile("^name$")))).to_have_count(1)
    expect(problems.locator("li", has=page.locator("code", has_text=re.compile("^port$")))).to_have_count(1)
    expect(manifest).to_have_attribute("aria-invalid", "true")

    manifest.fill(stdlib_manifest("console-story"))
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(f"{control_plane.url}/apps/console-story")
    url = control_plane.api("GET", "/apps/console-story").json()["url"]

    page.get_by_role("tab", name="Releases").click()
    expect(page.get_by_text("No release yet")).to_be_visible()
    repo = reloading_app(tmp_path / "story")
    commit_server(repo, RELOADING_SERVER.replace("TEXT = \"one\"", "TEXT = \"one\"\nprint(\"app says: started\", flush=True)"),
                  "one, saying so")
    control_plane.push(repo, "console-story")
    expect(release_row(page, 1).get_by_text("live", exact=True)).to_be_visible()  # no reload: the stream
    commit_server(repo, RELOADING_SERVER.replace("TEXT = \"one\"", "TEXT = \"two\""), "two")
    control_plane.push(repo, "console-story", options=("nowait",))
    expect(release_row(page, 2).get_by_text("live", exact=True)).to_be_visible(timeout=30_000)
    expect(release_row(page, 1).get_by_text("superseded", exact=True)).to_be_visible()
    screenshot(page, "console-releases")

    page.get_by_role("tab", name="Logs").click()
    log = page.get_by_role("log", name="Logs of console-story")
    expect(log).to_contain_text("app says: started")
    page.get_by_label("Container").select_option("git-sync")
    expect(log.get_by_text("app says: started")).to_be_hidden()
    page.get_by_label("Container").select_option("")
    expect(page.get_by_role("list", name="Deploy of v2")).to_be_visible()

    page.get_by_role("tab", name="Config").click()
    page.get_by_label("Key").fill("GREETING")
    page.get_by_label("Value").fill("hello from the console")
    page.get_by_role("button", name="Set").click()
    expect(page.get_by_role("row").filter(has_text="GREETING")).to_contain_text("hello from the console")
    expect(page.get_by_label("Key")).to_have_value("")  # the form is cleared once the set is live
    assert seen(url)["env"] == "hello from the console"
    screenshot(page, "console-config")

    page.get_by_role("tab", name="Releases").click()
    page.get_by_role("button", name="Roll back to v1").click()
    expect(release_row(page, 4).get_by_text("live", exact=True)).to_be_visible(timeout=30_000)
    expect(release_row(page, 4)).to_contain_text("rollback to v1")
    wait_for(lambda: seen(url).get("text") == "one", 30, what="the old text served again")
    assert seen(url)["env"] == "-"  # v1 ran without that config

    page.get_by_role("tab", name="Overview").click()
    expect(page.get_by_text("serving", exact=True).first).to_be_visible()
    screenshot(page, "console-app")
    page.get_by_role("button", name="Delete", exact=True).click()
    confirm = page.get_by_role("button", name="Delete console-story")
    expect(confirm).to_be_disabled()
    page.get_by_label(re.compile("^Type console-story")).fill("console-stor")
    expect(confirm).to_be_disabled()
    page.get_by_label(re.compile("^Type console-story")).fill("console-story")
    confirm.click()
    page.wait_for_url(f"{control_plane.url}/")
    assert control_plane.api("GET", "/apps/console-story").status_code == 404
    expect(page.get_by_role("link", name="console-story", exact=True)).to_have_count(0)


HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def test_hostile_text_from_commits_and_app_output_is_shown_as_text(console, control_plane, tmp_path):
    repo = reloading_app(tmp_path / "hostile")
    commit_server(repo, RELOADING_SERVER.replace("TEXT = \"one\"", f"TEXT = \"one\"\nprint({HOSTILE!r}, flush=True)"),
                  HOSTILE)
    control_plane.create(stdlib_manifest("hostile"))
    control_plane.push(repo, "hostile")
    source = (repo / "server.py").read_text().replace("\nclass Handler", f"\nraise RuntimeError({HOSTILE!r})\n\n\nclass Handler", 1)
    commit_server(repo, source, "break: " + HOSTILE)
    assert control_plane.push(repo, "hostile", check=False).returncode != 0
    page = console()
    page.goto(control_plane.url + "/apps/hostile")
    failure = page.get_by_role("region", name=re.compile("^v2 failed"))
    expect(failure).to_contain_text(f"RuntimeError: {HOSTILE}")
    page.get_by_role("tab", name="Releases").click()
    expect(release_row(page, 1)).to_contain_text(HOSTILE)
    expect(release_row(page, 2)).to_contain_text("break: " + HOSTILE)
    page.get_by_role("tab", name="Logs").click()
    expect(page.get_by_role("log")).to_contain_text(HOSTILE)
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img, main script").count() == 0
    page.goto(control_plane.url + "/")
    expect(page.get_by_role("link", name="hostile", exact=True)).to_be_visible()
    assert page.evaluate("window.pwned") is None
    control_plane.api("DELETE", "/apps/hostile")


def test_the_console_reads_at_390_px_and_works_from_the_keyboard(console, control_plane, tmp_path):
    control_plane.create(stdlib_manifest("a-rather-long-application-name-to-wrap") + "sidecars: [topz]\n")
    repo = reloading_app(tmp_path / "narrow")
    control_plane.push(repo, "a-rather-long-application-name-to-wrap")
    control_plane.cli("config", "set", "a-rather-long-application-name-to-wrap", "A_LONG_VARIABLE_NAME=" + "x" * 120)
    page = console(width=390, height=844)
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    expect(page.get_by_role("link", name="a-rather-long-application-name-to-wrap", exact=True)).to_be_visible()
    screenshot(page, "console-apps-390")
    assert page.evaluate(overflow) == 0
    page.get_by_role("button", name="New app").click()
    assert page.evaluate(overflow) == 0
    page.get_by_role("link", name="a-rather-long-application-name-to-wrap", exact=True).click()
    tab = page.get_by_role("tab", name="Overview")
    expect(page.get_by_role("tabpanel", name="Overview")).to_contain_text("Containers")
    tab.focus()
    for name in ("Releases", "Logs", "Config", "Processes"):
        page.keyboard.press("ArrowRight")
        expect(page.get_by_role("tab", name=name)).to_be_focused()
        expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true")
        panel = page.get_by_role("tabpanel", name=name)
        expect(panel).to_be_visible()
        expect(panel).not_to_be_empty()
        if name == "Processes":
            expect(panel.get_by_role("cell", name=re.compile("server.py")).first).to_be_visible()
        assert page.evaluate(overflow) == 0, f"{name} scrolls sideways at 390 px"
    page.keyboard.press("Home")
    expect(tab).to_be_focused()
    control_plane.api("DELETE", "/apps/a-rather-long-application-name-to-wrap")

