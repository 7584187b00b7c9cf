"""The README documents every CLI command, setting and manifest field."""

from __future__ import annotations

import dataclasses

import pytest

from helpers import ROOT
from paas.cli import cli
from paas.manifest import Healthcheck, Manifest, Source
from paas.settings import Settings

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_cli_command_documented(command):
    assert f"`paas {command}" in README


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Settings)])
def test_setting_documented(field):
    name = "PAAS_DATA" if field == "data_dir" else f"PAAS_{field.upper()}"
    assert f"`{name}`" in README


@pytest.mark.parametrize(
    "field",
    [*Manifest.model_fields, *(f"  {f}:" for f in Source.model_fields), *(f"{f}:" for f in Healthcheck.model_fields)],
)
def test_manifest_field_documented(field):
    manifest_section = README.split("## Manifest", 1)[1].split("## API", 1)[0]
    assert field.strip() in manifest_section
