"""Conventions every command follows: --version, an example in every --help, uncut subcommand listings
(song lists from --from-file and stdin: tests/serving/test_cli_inputs.py)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from ast_export.cli import main as export_main
from serving.cli import main as serve_main
from training.cli import main as train_main

MAINS = {"ast-train": train_main, "ast-export": export_main, "ast-serve": serve_main}


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            found += _commands(command.get_command(ctx, name), (*path, name))
    return found


@pytest.mark.parametrize("name", sorted(MAINS))
def test_version(name: str) -> None:
    result = CliRunner().invoke(MAINS[name], ["--version"])
    assert result.exit_code == 0 and "version" in result.output


@pytest.mark.parametrize("name", sorted(MAINS))
def test_every_help_has_an_example_and_uncut_listings(name: str) -> None:
    for path in _commands(MAINS[name]):
        out = CliRunner().invoke(MAINS[name], [*path, "--help"]).output
        assert "Example" in out, (name, path)
        listing = out.split("Commands:")[1].split("Example")[0] if "Commands:" in out else ""
        assert not re.search(r"\w\.\.\.(\s|$)", listing), (name, path, listing)  # click's cut: "to one..."
