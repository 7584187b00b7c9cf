"""The README documents every CLI command, setting and manifest field — read as a person
reads it: the manifest's example parsed as YAML, the tables parsed as tables."""

from __future__ import annotations

import dataclasses
import re

import click
import pytest
import yaml

from helpers import ROOT
from paas import manifest
from paas.cli import cli
from paas.settings import Settings

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README's text under ``## title``, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def table_cells(text: str) -> list[str]:
    """The first cell of every row of the Markdown tables in ``text`` (header rows too)."""
    rows = [line for line in text.splitlines() if line.startswith("|") and "---" not in line]
    return [re.split(r"(?<!\\)\|", row)[1].strip() for row in rows]  # `\|` is a pipe inside a cell


def documented_commands() -> set[str]:
    """`paas NAME …` of each row; `paas GROUP NAME …` for a command group's commands."""
    names = set()
    for cell in table_cells(section("CLI")):
        words = re.match(r"`paas ([^`]*)`", cell)
        if words:
            first, *rest = words.group(1).split()
            grouped = isinstance(cli.commands.get(first), click.Group) and rest
            names.add(f"{first} {rest[0]}" if grouped else first)
    return names


def cli_commands() -> set[str]:
    names = set()
    for name, command in cli.commands.items():
        if isinstance(command, click.Group):
            names |= {f"{name} {sub}" for sub in command.commands}
        else:
            names.add(name)
    return names


def test_every_cli_command_has_a_row_and_every_row_a_command():
    assert documented_commands() == cli_commands()


def test_every_setting_has_a_row():
    rows = {cell.strip("`") for cell in table_cells(section("Settings"))}
    for field in dataclasses.fields(Settings):
        name = "PAAS_DATA" if field.name == "data_dir" else f"PAAS_{field.name.upper()}"
        assert name in rows, f"setting {name} has no row in the README's Settings table"


@pytest.fixture(scope="module")
def example() -> dict:
    """The manifest example of the README's Manifest section, parsed as YAML."""
    block = re.search(r"```yaml\n(.*?)```", section("Manifest"), re.S)
    assert block, "the Manifest section has no yaml example"
    return yaml.safe_load(block.group(1))


def test_the_manifest_example_is_a_valid_manifest(example):
    manifest.validate(example)


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ((), manifest.Manifest),
        (("source",), manifest.Source),
        (("healthcheck",), manifest.Healthcheck),
        (("resources",), manifest.Resources),
        (("config",), manifest.Config),
    ],
)
def test_the_manifest_example_shows_every_field(example, path, model):
    shown = example
    for key in path:
        shown = shown[key]
    assert set(shown) == set(model.model_fields), f"{'.'.join(path) or 'manifest'}: documented fields differ"


def test_ci_runs_the_readmes_test_command_with_every_tier_required():
    """`.ci/run` runs the README's test command with the variable of every tier the suite has
    (tests/conftest.py's NEEDS) set, and the README names the same variables."""
    from conftest import NEEDS

    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^((?:PAAS_REQUIRE_\w+=1 )+)python3 -m pytest\b", ci, re.M)
    assert command, ".ci/run runs no `PAAS_REQUIRE_…=1 python3 -m pytest`"
    required = command.group(1).split()
    assert sorted(required) == sorted(f"{variable}=1" for _, variable in NEEDS.values())
    tests = section("Tests")
    assert "\npython -m pytest\n" in tests
    assert f"this command with `{' '.join(required)}`" in " ".join(tests.split())
